"""Measuring the zoo's models: does a generated image show what its caption says?

The shapes world knows the attributes behind every caption, and ``shapes-classifier`` reads them
back from pixels, so caption accuracy is a plain count: per attribute (shape, colour, size,
position, background) and joint (the whole scene right). Work is split into chunks of 32 samples,
chunk c drawn from seed ``seed * 1000 + c``, so a test can re-measure chunk 0 of a model card's
claim exactly, with fewer samples. The measures of edits live here too: PSNR (overall and outside a region), mask
IoU, and an edit's success as the classifier reads it.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ._checks import check_float, check_index, check_int, check_tensor
from .data.shapes import Scenes, ShapesWorld
from .models.classifier import cell_targets

CHUNK = 32


def scene_accuracy(pred: dict[str, torch.Tensor], scenes: Scenes) -> dict[str, torch.Tensor]:
    """Per-image correctness (B,) bool of each attribute, given the classifier's predictions.

    shape / colour / size: every object has it right; position: a predicted object in every object's
    cell and nowhere else; background; joint: all of these.
    """
    target = cell_targets(scenes)
    present = target["presence"] == 1
    out = {}
    for name in ("shape", "colour", "size"):
        out[name] = ((pred[name] == target[name]) | ~present).all(1)
    out["position"] = (pred["presence"] == target["presence"]).all(1)
    out["background"] = pred["background"] == target["background"]
    out["joint"] = out["shape"] & out["colour"] & out["size"] & out["position"] & out["background"]
    return out


EDITABLE = ("shape", "colour", "size", "position", "background")


def read_scenes(pred: dict[str, torch.Tensor]) -> Scenes:
    """The scenes a classifier's predictions (``ShapesClassifier.predict``) describe: an object in every cell predicted
    present (present ones first, in cell order), each centred in its cell (no jitter): the inverse of
    ``cell_targets``."""
    if not isinstance(pred, dict) or not {"presence", "shape", "colour", "size", "background"} <= set(pred):
        raise ValueError("pred must be a classifier's predictions: a dict with presence, shape, colour, size and "
                         f"background, got {type(pred).__name__}")
    presence = pred["presence"] == 1
    order = torch.sort((~presence).int(), dim=1, stable=True).indices  # present cells first, in cell order
    present = presence.gather(1, order)
    pick = lambda name: torch.where(present, pred[name].gather(1, order), 0)  # noqa: E731
    return Scenes(shape=pick("shape"), colour=pick("colour"), size=pick("size"), position=order,
                  jitter=torch.zeros(*order.shape, 2, device=order.device), present=present,
                  background=pred["background"])


@torch.no_grad()
def render_distance(judge, images: torch.Tensor) -> torch.Tensor:
    """RMS distance per image (B,) from ``images`` to a render of the scene the judge reads in them
    (``read_scenes``): how far an image is from being a picture of the shapes world at all, whatever scene it shows.
    A realism score that does not come from the diffusion model: near 0 for clean renders (what remains is the
    objects' jitter), large for flat, ragged or off-colour paintings."""
    check_tensor("images", images, ndim=4)
    world = ShapesWorld(resolution=images.shape[-1], max_objects=9)
    rendered = world.render(read_scenes(judge.predict(images)))[0].to(images)
    return (images - rendered).pow(2).flatten(1).mean(1).sqrt()


@torch.no_grad()
def edit_success(judge, images: torch.Tensor, scenes: Scenes, changed: str) -> dict[str, torch.Tensor]:
    """How an edit that changed attribute ``changed`` to give ``scenes`` came out, per image (B,) bool:
    ``target``, the judge reads the changed attribute as ``scenes`` has it; ``kept``, it reads every other
    attribute as ``scenes`` has it too (the rest of the scene unchanged)."""
    if changed not in EDITABLE:
        raise ValueError(f"changed must be one of {list(EDITABLE)}, got {changed!r}")
    read = scene_accuracy(judge.predict(images), scenes)
    return {"target": read[changed], "kept": torch.stack([read[k] for k in EDITABLE if k != changed]).all(0)}


def swapped_reading(judge, images: torch.Tensor, scenes: Scenes) -> dict[str, torch.Tensor]:
    """Attribute binding, per image (B,) bool: for each of shape, colour and size, the judge reads that attribute
    wrong for ``scenes`` but right for the same scenes with their first two objects' values of it exchanged: the
    caption's words were drawn, each on the other object (the failure Attend-and-Excite, Chefer et al. 2023,
    calls attribute binding). ``any``: for some attribute. Always False for a scene with one object, and for an
    attribute the two objects share."""
    check_tensor("images", images, ndim=4)
    if not isinstance(scenes, Scenes) or len(scenes) != len(images):
        raise ValueError(f"scenes must be Scenes, one per image ({len(images)}), got {type(scenes).__name__}")
    return _swapped(judge.predict(images), scenes)


def _swapped(read: dict[str, torch.Tensor], scenes: Scenes) -> dict[str, torch.Tensor]:
    """``swapped_reading`` from the judge's predictions ``read``, on the scenes' device."""
    right = scene_accuracy(read, scenes)
    two = scenes.present[:, :2].all(1) if scenes.present.shape[1] >= 2 else torch.zeros(len(scenes), dtype=torch.bool)
    out = {}
    for name in ("shape", "colour", "size"):
        values = getattr(scenes, name).clone()
        if bool(two.any()):
            values[two, 0], values[two, 1] = getattr(scenes, name)[two, 1], getattr(scenes, name)[two, 0]
        out[name] = two & ~right[name] & scene_accuracy(read, replace(scenes, **{name: values}))[name]
    out["any"] = out["shape"] | out["colour"] | out["size"]
    return out


def mask_iou(mask: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Intersection over union per image (B,) of a mask and a true region, both (B, 1, H, W) with 1 inside."""
    check_tensor("mask", mask, ndim=4)
    check_tensor("region", region, shape=tuple(mask.shape))
    mask, region = mask > 0.5, region > 0.5
    return (mask & region).flatten(1).sum(1) / (mask | region).flatten(1).sum(1).clamp_min(1)


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, 10 log10(peak^2 / MSE), in dB; ``peak`` = 2 for images in
    [-1, 1]. Identical images give inf."""
    check_tensor("a", a, ndim=range(2, 6))
    check_tensor("b", b, shape=tuple(a.shape))
    mse = (a - b).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(check_float("peak", peak, 0.0) ** 2 / mse)


def psnr_outside(images: torch.Tensor, original: torch.Tensor, region: torch.Tensor, peak: float = 2.0) -> torch.Tensor:
    """PSNR per image (B,) between ``images`` and the ``original`` (B, C, H, W) outside ``region`` (B, 1, H, W, 1
    inside): how well an edit kept what it was not asked to change. The MSE is floored at 1e-10 (identical: 106 dB
    at ``peak`` 2, images in [-1, 1])."""
    check_tensor("images", images, ndim=4)
    check_tensor("original", original, shape=tuple(images.shape))
    check_tensor("region", region, shape=(images.shape[0], 1, *images.shape[2:]))
    outside = (1 - region).expand_as(images)
    mse = ((images - original) ** 2 * outside).flatten(1).sum(1) / outside.flatten(1).sum(1).clamp_min(1)
    return 10 * torch.log10(peak ** 2 / mse.clamp_min(1e-10))


def best_threshold_iou(score: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """The highest IoU with ``region`` that any threshold on ``score`` reaches, per image (B,): both (B, 1, H, W),
    ``region`` 1 inside. A mask rule that thresholds the map can do no better (ties in ``score`` aside), so this is
    what the map itself allows, e.g. DiffEdit's difference map. Every top-k set of pixels, k = 1 ... H W, is tried."""
    check_tensor("score", score, ndim=4)
    check_tensor("region", region, shape=tuple(score.shape))
    inside = (region.flatten(1) > 0.5).float().gather(1, score.flatten(1).argsort(dim=1, descending=True))
    hits = inside.cumsum(1)
    k = torch.arange(1, hits.shape[1] + 1, device=hits.device)
    return (hits / (k + inside.sum(1, keepdim=True) - hits)).amax(1)


def diversity_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    """Sample diversity: the mean over images of the RMS distance between two images (B, C, H, W) drawn
    for the same captions from different noise."""
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"a and b must be image batches (B, C, H, W) of one shape, "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}")
    return ((a - b) ** 2).mean(dim=(1, 2, 3)).sqrt().mean().item()


@torch.no_grad()
def level_errors(denoiser, schedule, x0: torch.Tensor, cond, levels=(50, 300, 700, 950), seed: int = 0,
                 prediction_type: str | None = None) -> dict[str, list[float]]:
    """Where a trained denoiser works, level by level: for x0 noised to each level t with seeded noise,
    ``relative_error``: the mean squared error of its output (eps, x_0 or v, as its ``prediction_type`` says;
    ``prediction_type`` states it for a bare network) over that of predicting 0 (1 = learned nothing), and
    ``t_change``: the relative change of its output on the same x_t when t alone becomes T - t (near 0 =
    it ignores t). A model card says what a model scores; this says at which noise levels it fails."""
    from .diffusion.forward import output_from_x0_eps, prediction_type_of, q_sample

    check_tensor("x0", x0, ndim=4)
    prediction_type = prediction_type_of(denoiser, prediction_type)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(check_int("seed", seed, 0))).to(x0)
    out = {"relative_error": [], "t_change": []}
    for level in levels:
        t = torch.full((len(x0),), check_int("levels", level, 0, schedule.T), device=x0.device)
        target = output_from_x0_eps(x0, noise, schedule.abar(t, x0), prediction_type)
        x_t = q_sample(x0, t, noise, schedule)
        prediction, other = denoiser(x_t, t, cond), denoiser(x_t, schedule.T - t, cond)
        out["relative_error"].append(((prediction - target).pow(2).mean() / target.pow(2).mean()).item())
        out["t_change"].append(((prediction - other).norm() / prediction.norm()).item())
    return out


def bayes_accuracy(candidates: torch.Tensor, truth: torch.Tensor, abar, draws: int = 16, seed: int = 0) -> torch.Tensor:
    """How often the Bayes-optimal observer names the right one of K known clean images from a noisy copy of it.

    ``candidates`` (B, K, C, H, W): per trial K equally likely images (one scene rendered K ways, say in each
    colour); ``truth`` (B,) long: the one noised; ``abar`` a float or (L,) tensor of noise levels. The copy is
    y = sqrt(abar) x_truth + sqrt(1 - abar) eps, and the observer picks the k of the largest likelihood,
    log p(y | k) = const + (sqrt(abar) <y, x_k> - abar |x_k|^2 / 2) / (1 - abar). No network is involved: this
    is what the noise level leaves of the choice, for any denoiser. Returns (L,) accuracies, each over B x
    ``draws`` noisy copies.

    Only inner products enter, <y, x_k> = sqrt(abar) G[truth, k] + sqrt(1 - abar) z_k with z ~ N(0, G), so the
    draws come from each trial's K x K Gram matrix G = X X^T (float64) and never from a C x H x W noise image:
    a 128-px candidate set costs what a 32-px one does. G grows as the pixel count for the same scene, the
    reason a fixed noise level hides less of a larger image ("simple diffusion", eq. 4).
    """
    check_tensor("candidates", candidates, ndim=5)
    B, K = candidates.shape[:2]
    if K < 2:
        raise ValueError(f"candidates must hold at least 2 images per trial, got shape {tuple(candidates.shape)}")
    check_tensor("truth", truth, shape=(B,), floating=False)
    check_index("truth", truth, K)
    abar = torch.as_tensor(abar, dtype=torch.float64).reshape(-1)
    if not bool(((abar > 0) & (abar < 1)).all()):
        raise ValueError(f"abar must lie in (0, 1), got {abar.tolist()}")
    check_int("draws", draws, 1)
    X = candidates.detach().cpu().double().flatten(2)  # (B, K, D)
    G = X @ X.transpose(1, 2)  # (B, K, K)
    values, vectors = torch.linalg.eigh(G)
    root = vectors * values.clamp(min=0).sqrt()[:, None, :]  # root @ root^T = G
    g = torch.Generator().manual_seed(seed)
    z = torch.einsum("bkj,bnj->bnk", root, torch.randn(B, draws, K, generator=g, dtype=torch.float64))
    own = G[torch.arange(B), truth.cpu()][:, None, :]  # (B, 1, K): <x_truth, x_k>
    norms = G.diagonal(dim1=1, dim2=2)[:, None, :]  # (B, 1, K)
    out = []
    for a in abar.tolist():
        inner = a**0.5 * own + (1 - a) ** 0.5 * z  # <y, x_k>, (B, draws, K)
        pick = (a**0.5 * inner - a * norms / 2).argmax(-1)
        out.append((pick == truth.cpu()[:, None]).double().mean())
    return torch.stack(out)


def _summarise(per_chunk: list[dict[str, torch.Tensor]]) -> dict:
    names = per_chunk[0].keys()
    result = {name: round(torch.cat([c[name] for c in per_chunk]).float().mean().item(), 4) for name in names}
    result["joint_per_chunk"] = [round(c["joint"].float().mean().item(), 4) for c in per_chunk]
    return result


def _chunks(n: int) -> int:
    check_int("n", n, CHUNK)
    if n % CHUNK:
        raise ValueError(f"n must be a multiple of {CHUNK}, got {n}")
    return n // CHUNK


@torch.no_grad()
def classifier_accuracy(classifier, n: int = 1024, seed: int = 0, max_objects: int = 3) -> dict:
    """The judge's own accuracy on fresh procedural scenes it never trained on."""
    chunks = _chunks(n)
    world = ShapesWorld(resolution=classifier.resolution, max_objects=max_objects)
    device = next(classifier.parameters()).device
    per_chunk = []
    for c in range(chunks):
        scenes = world.sample(CHUNK, seed=seed * 1000 + c + 10**6)  # far from the training seeds
        per_chunk.append(scene_accuracy(classifier.predict(world.render(scenes)[0].to(device)), scenes))
    return {"n": n, **_summarise(per_chunk)}


@torch.no_grad()
def caption_accuracy(pipeline, classifier, n: int = 256, guidance: float = 3.0, steps: int = 25, seed: int = 0,
                     max_objects: int = 2) -> dict:
    """Generate one image per caption of n fresh scenes and score it with the classifier; also the
    diversity: the mean RMS distance between two images of the same caption from different seeds.

    And attribute binding, over the two-object captions: ``joint_two_objects`` (their joint accuracy) and
    ``binding_swapped``, the share of them that the judge reads wrong for the caption but right with the two
    objects' values of some attribute exchanged (``swapped_reading``): the words drawn on the wrong object."""
    chunks = _chunks(n)
    world = ShapesWorld(resolution=pipeline.resolution, max_objects=max_objects)
    per_chunk, spread, two, swapped = [], [], [], []
    for c in range(chunks):
        scenes = world.sample(CHUNK, seed=seed * 1000 + c)
        captions = scenes.captions()
        images = pipeline.generate(captions, guidance_scale=guidance, num_inference_steps=steps, seed=seed * 1000 + c)
        judged = images.clamp(-1, 1).to(next(classifier.parameters()).device)
        read = {k: v.cpu() for k, v in classifier.predict(judged).items()}
        per_chunk.append(scene_accuracy(read, scenes))
        two.append(scenes.num_objects == 2)
        swapped.append(_swapped(read, scenes)["any"])
        if c == 0:  # diversity on the first chunk: the same captions again, with other noise
            again = pipeline.generate(captions, guidance_scale=guidance, num_inference_steps=steps,
                                      seed=seed * 1000 + 999)
            spread.append(diversity_rms(images, again))
    two, swapped, joint = torch.cat(two), torch.cat(swapped), torch.cat([c["joint"] for c in per_chunk])
    binding = {"two_objects": int(two.sum()),
               "joint_two_objects": round(joint[two].float().mean().item(), 4) if two.any() else None,
               "binding_swapped": round(swapped[two].float().mean().item(), 4) if two.any() else None}
    return {"n": n, "guidance": guidance, "steps": steps, **_summarise(per_chunk),
            "diversity_rms": round(sum(spread) / len(spread), 4), **binding}


def evaluate(name: str, n: int | None = None, steps: int = 25, guidances=(1.0, 3.0), device: str = "cpu",
             folder=None) -> dict:
    """The card metrics of a zoo model: classifier accuracy, or caption accuracy at each guidance
    (judged by the ``shapes-classifier`` of the same folder)."""
    from . import zoo

    folder = folder or zoo.CHECKPOINTS
    model = zoo.load(name, device=device, folder=folder)
    if zoo.card(name, folder)["recipe"]["architecture"] == "classifier":
        return {"classifier_accuracy": classifier_accuracy(model, n or 1024)}
    judge = zoo.load("shapes-classifier", device=device, folder=folder)
    return {f"guidance_{g:g}": caption_accuracy(model, judge, n or 256, g, steps) for g in guidances}
