"""``coursekit report``: the course's headline numbers, reproduced from the shipped models with fixed seeds.

Each section is a function ``quick -> {"setup": ..., "rows": [...]}``; ``--quick`` runs every one on a small
sample (under a minute on 2 CPU cores, for the test that checks the structure and the direction of every effect); the full
run is what the issue notes and lessons quote. Editing issues add their sections to ``SECTIONS``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import torch

from ._checks import check_choice
from .machine import machine


def _stats(values: torch.Tensor) -> dict:
    return {"median": round(values.median().item(), 2), "mean": round(values.mean().item(), 2),
            "min": round(values.min().item(), 2)}


def _scenes(n: int, seed: int):
    from .data import ShapesWorld

    world = ShapesWorld(resolution=32, max_objects=2)
    scenes = world.sample(n, seed=seed)
    return scenes, world.render(scenes)[0]


def inversion(quick: bool) -> dict:
    """DDIM inversion round trip on shapes-unet: PSNR (peak 2) per image against steps, caption and guidance."""
    from . import zoo
    from .editing import invert, reconstruct
    from .evaluate import psnr

    n, seed = (4, 1000) if quick else (64, 1000)
    settings = ([("true", 1.0, s) for s in (5, 20)] + [("empty", 1.0, 20), ("true", 7.5, 20)] if quick else
                [("true", 1.0, s) for s in (10, 20, 50, 100, 200)]
                + [("empty", 1.0, 50), ("true", 3.0, 50), ("true", 7.5, 50)])
    pipe = zoo.load("shapes-unet")
    scenes, images = _scenes(n, seed)
    rows = []
    for caption, guidance, steps in settings:
        start = time.perf_counter()
        inv = invert(pipe, images, scenes.captions() if caption == "true" else None, num_inference_steps=steps,
                     guidance_scale=guidance)
        rows.append({"caption": caption, "guidance": guidance, "steps": steps,
                     "psnr": _stats(psnr(reconstruct(pipe, inv), images)),
                     "noise_std": round(inv.noise.std().item(), 3),
                     "seconds": round(time.perf_counter() - start, 1)})
    return {"setup": {"model": "shapes-unet", "images": n, "seed": seed}, "rows": rows}


def null_text(quick: bool) -> dict:
    """Guided (7.5) round trip, plain DDIM inversion against null-text inversion."""
    from . import zoo
    from .editing import invert, null_text_invert, reconstruct
    from .evaluate import psnr

    n, seed, steps, guidance = (2, 1000, 5, 7.5) if quick else (16, 1000, 20, 7.5)
    iterations, lr = 10, 0.1
    pipe = zoo.load("shapes-unet")
    scenes, images = _scenes(n, seed)
    rows = []
    for method in ("plain", "null-text"):
        start = time.perf_counter()
        if method == "plain":
            inv = invert(pipe, images, scenes.captions(), num_inference_steps=steps, guidance_scale=guidance)
        else:
            inv = null_text_invert(pipe, images, scenes.captions(), num_inference_steps=steps,
                                   guidance_scale=guidance, num_inner_steps=iterations, lr=lr)
        rows.append({"method": method, "guidance": guidance, "steps": steps,
                     "psnr": _stats(psnr(reconstruct(pipe, inv), images)),
                     "seconds": round(time.perf_counter() - start, 1)})
    return {"setup": {"model": "shapes-unet", "images": n, "seed": seed, "iterations": iterations, "lr": lr},
            "rows": rows}


def nearest_distance(points: torch.Tensor, domain: str, seed: int = 99) -> float:
    """Median distance from each point to the nearest of 5000 fresh points of the toy ``domain``: near that
    of the domain's own points when ``points`` lie in it."""
    from .data import toy2d

    return round(torch.cdist(points, toy2d.sample(domain, 5000, seed=seed)).min(1).values.median().item(), 4)


def ddib_2d(quick: bool) -> dict:
    """DDIB between 2-D toys with small denoisers trained here (moons -> Gaussian ring, circles -> moons, and back):
    how close the translated points come to the target domain, and the cycle error, against steps."""
    from . import diffusion
    from .data import toy2d
    from .editing import translate
    from .train import fit_toy

    pairs = [("moons", "gaussians")] if quick else [("moons", "gaussians"), ("circles", "moons")]
    train_steps = 300 if quick else 1000
    schedule = diffusion.linear()
    models = {name: fit_toy(name, schedule, train_steps) for name in {n for pair in pairs for n in pair}}
    rows, baselines = [], {}
    for source, target in pairs:
        x = toy2d.sample(source, 1000, seed=5)
        baselines[f"{source}->{target}"] = {"source_distance": nearest_distance(x, target),
                                            "target_own_distance": nearest_distance(toy2d.sample(target, 1000, seed=6),
                                                                                    target)}
        for steps in (5, 50) if quick else (5, 10, 20, 50, 100, 200):
            y = translate(x, schedule, models[source], models[target], num_inference_steps=steps)
            back = translate(y, schedule, models[target], models[source], num_inference_steps=steps)
            rows.append({"pair": f"{source}->{target}", "steps": steps, "target_distance": nearest_distance(y, target),
                         "cycle_error": round((back - x).norm(dim=1).mean().item(), 4)})
    return {"setup": {"train_steps": train_steps, "points": 1000, "baselines": baselines}, "rows": rows}


def ddib_images(quick: bool) -> dict:
    """DDIB between captions of shapes-unet (one attribute changed), judged by shapes-classifier."""
    from . import zoo
    from .data.shapes import BACKGROUNDS, SHAPES
    from .editing import translate_captions
    from .evaluate import edit_success, psnr

    n, seed, steps, guidance = (4, 2000, 10, 1.0) if quick else (64, 2000, 25, 1.0)
    pipe, judge = zoo.load("shapes-unet"), zoo.load("shapes-classifier")
    source, images = _scenes(n, seed)
    changes = {"background": lambda s: dataclasses.replace(s, background=(s.background + 1) % len(BACKGROUNDS)),
               "shape": lambda s: dataclasses.replace(s, shape=(s.shape + 1) % len(SHAPES))}
    rows = []
    for name, change in changes.items():
        start = time.perf_counter()
        target = change(source)
        y = translate_captions(pipe, images, source_prompt=source.captions(), target_prompt=target.captions(),
                               num_inference_steps=steps, guidance_scale=guidance).clamp(-1, 1)
        judged = edit_success(judge, y, target, name)
        back = translate_captions(pipe, y, source_prompt=target.captions(), target_prompt=source.captions(),
                                  num_inference_steps=steps, guidance_scale=guidance)
        rows.append({"change": name, "target_reached": round(judged["target"].float().mean().item(), 3),
                     "others_kept": round(judged["kept"].float().mean().item(), 3),
                     "others_read_right_on_source": round(
                         edit_success(judge, images, source, name)["kept"].float().mean().item(), 3),
                     "success": round((judged["target"] & judged["kept"]).float().mean().item(), 3),
                     "cycle_psnr": _stats(psnr(back, images)), "seconds": round(time.perf_counter() - start, 1)})
    return {"setup": {"model": "shapes-unet", "judge": "shapes-classifier", "images": n, "seed": seed,
                      "steps": steps, "guidance": guidance}, "rows": rows}


# paint_scenes' default style, and a cruder hand (the judge reads 83% and 48% of the 64 paintings fully right)
PAINTING_STYLES = {"default": {}, "crude": {"wobble": 0.35, "colour_jitter": 0.15}}


def sdedit(quick: bool) -> dict:
    """SDEdit from stroke paintings of known scenes, against strength: faithfulness (RMS to the painting),
    realism (the model's own relative v-error at t = 50 on the result under the empty caption: low on rendered
    scenes, high on paintings), distance to the intended scene's clean render, and whether the judge reads every
    attribute of the intended scene; for two painting styles, with the empty and with the true caption. The
    clean renders go through the same SDEdit as a control: what the model itself keeps of a perfect guide."""
    from . import zoo
    from .data import ShapesWorld
    from .data.strokes import paint_scenes
    from .editing import sdedit as run
    from .evaluate import level_errors, scene_accuracy

    n, seed, steps = (4, 3000, 10) if quick else (64, 3000, 25)
    strengths = (0.2, 0.6) if quick else (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    pipe, judge = zoo.load("shapes-unet"), zoo.load("shapes-classifier")
    world = ShapesWorld(resolution=32, max_objects=2)
    scenes = world.sample(n, seed=seed)
    clean = world.render(scenes)[0]
    guides = {style: paint_scenes(scenes, **options) for style, options in PAINTING_STYLES.items()}
    empty = pipe.encode_text([""] * n)

    def measure(x: torch.Tensor, guide: torch.Tensor) -> dict:
        with torch.no_grad():
            joint = scene_accuracy(judge.predict(x), scenes)["joint"].float().mean().item()
            error = level_errors(pipe.denoiser, pipe.schedule, x, empty, levels=(50,))["relative_error"][0]
        rms = lambda a, b: round((a - b).pow(2).flatten(1).mean(1).sqrt().mean().item(), 4)
        return {"rms_to_guide": rms(x, guide), "rms_to_scene": rms(x, clean), "realism_error": round(error, 4),
                "all_attributes_read": round(joint, 3)}

    rows = []
    runs = [(style, caption) for style in PAINTING_STYLES for caption in ("empty", "true")] + [("clean", "true")]
    for style, caption in runs:
        guide = guides.get(style, clean)
        for strength in strengths:
            start = time.perf_counter()
            out = run(pipe, guide, scenes.captions() if caption == "true" else None, strength=strength,
                      num_inference_steps=steps, guidance_scale=1.0).clamp(-1, 1)
            rows.append({"guide": style, "caption": caption, "strength": strength, **measure(out, guide),
                         "seconds": round(time.perf_counter() - start, 1)})
    setup = {"model": "shapes-unet", "judge": "shapes-classifier", "paintings": n, "seed": seed, "steps": steps,
             "styles": PAINTING_STYLES, "guides_themselves": {k: measure(v, v) for k, v in guides.items()},
             "clean_renders": measure(clean, clean)}
    return {"setup": setup, "rows": rows}


def compositing(quick: bool) -> dict:
    """SDEdit as a compositing tool (Meng et al. 2022, sec. 4.3): each scene's second object is cut, with a
    3-pixel margin, out of the same scene rendered on another background and pasted back, a crude composite
    with a patch of wrong background around the object. SDEdit regenerates it with the patch as mask (only the
    patch is generated, the rest kept exactly) or without, against strength. Measured against the true scene:
    RMS inside and outside the patch, and whether the judge reads every attribute."""
    from . import zoo
    from .data import ShapesWorld
    from .data.strokes import pasted_objects
    from .editing import sdedit as run
    from .evaluate import scene_accuracy

    n, seed, steps = (4, 5000, 10) if quick else (64, 5000, 25)
    strengths = (0.6,) if quick else (0.2, 0.4, 0.6, 0.8)
    pipe, judge = zoo.load("shapes-unet"), zoo.load("shapes-classifier")
    world = ShapesWorld(resolution=32, max_objects=2, min_objects=2)
    scenes = world.sample(n, seed=seed)
    truth, composite, patch = pasted_objects(world, scenes, seed)

    def measure(x: torch.Tensor) -> dict:
        error = (x - truth).pow(2).mean(1, keepdim=True)
        inside = (error * patch).flatten(1).sum(1) / patch.flatten(1).sum(1)
        outside = (error * (1 - patch)).flatten(1).sum(1) / (1 - patch).flatten(1).sum(1)
        with torch.no_grad():
            joint = scene_accuracy(judge.predict(x), scenes)["joint"].float().mean().item()
        return {"rms_inside": round(inside.sqrt().mean().item(), 4), "rms_outside": round(outside.sqrt().mean().item(), 4),
                "all_attributes_read": round(joint, 3)}

    rows = []
    for caption in ("empty", "true"):
        for masked in (True, False):
            for strength in strengths:
                start = time.perf_counter()
                out = run(pipe, composite, scenes.captions() if caption == "true" else None, strength=strength,
                          num_inference_steps=steps, guidance_scale=1.0,
                          mask_image=patch if masked else None).clamp(-1, 1)
                rows.append({"caption": caption, "masked": masked, "strength": strength, **measure(out),
                             "seconds": round(time.perf_counter() - start, 1)})
    setup = {"model": "shapes-unet", "judge": "shapes-classifier", "composites": n, "seed": seed, "steps": steps,
             "patch_share": round(patch.mean().item(), 3), "composites_themselves": measure(composite),
             "true_scenes": measure(truth)}
    return {"setup": setup, "rows": rows}


def sparse(quick: bool) -> dict:
    """SDEdit of clean scenes with one stroke painted over each, done sparsely (``editing.sparse_sdedit``, SIGE) against
    the same edit done densely, for two tile sizes and both GroupNorm choices (frozen, SIGE's; fresh): PSNR (peak
    2) per edit, the share of the 32x32 tiles the edit makes active, the MACs of one sparse forward (at t = 500)
    against the dense one, and seconds per edit (sparse: including the original's dense pass that fills the
    caches, which a deployment does once per image)."""
    from . import zoo
    from .data.strokes import paint_over, random_strokes
    from .editing import sdedit as dense_sdedit
    from .editing.sparse import sparse_sdedit
    from .models.sparse import SparseUNet, difference_mask
    from .evaluate import psnr
    from .models.counting import count_macs

    n, seed, steps, strength = (2, 4000, 10, 0.5) if quick else (16, 4000, 20, 0.5)
    pipe = zoo.load("shapes-unet")
    _, originals = _scenes(n, seed)
    edits = [(originals[i:i + 1], paint_over(originals[i:i + 1], [stroke]))
             for i, stroke in enumerate(random_strokes(n, seed))]
    start = time.perf_counter()
    options = dict(strength=strength, num_inference_steps=steps, guidance_scale=1.0)
    dense = [dense_sdedit(pipe, edited, **options) for _, edited in edits]
    rows = [{"block": None, "norms": "dense", "seconds_per_edit": round((time.perf_counter() - start) / n, 2)}]
    t, context = torch.tensor([500]), pipe.text_features([""])
    for block in (8, 4):
        engine = SparseUNet(pipe.denoiser.network, block)
        shares, reductions = [], []
        for original, edited in edits:
            tiles = engine.tiles(difference_mask(original, edited))
            _, cache = engine.record(original, t, context)
            reductions.append(count_macs(engine.unet, edited, t, context) /
                              count_macs(lambda: engine.sparse(edited, t, context, cache, tiles)))
            shares.append(tiles[32].fraction)
        for norms in ("frozen", "fresh"):
            start = time.perf_counter()
            scores = torch.tensor([psnr(sparse_sdedit(pipe, edited, original_image=original, norms=norms, block=block,
                                                      **options), d).item()
                                   for (original, edited), d in zip(edits, dense)])
            rows.append({"block": block, "norms": norms, "psnr_to_dense": _stats(scores),
                         "at_least_30_db": round((scores >= 30).float().mean().item(), 3),
                         "tile_share_32": _stats(torch.tensor(shares)), "mac_reduction": _stats(torch.tensor(reductions)),
                         "seconds_per_edit": round((time.perf_counter() - start) / n, 2)})
    masks = torch.tensor([difference_mask(o, e).float().mean().item() for o, e in edits])
    setup = {"model": "shapes-unet", "edits": n, "seed": seed, "steps": steps, "strength": strength,
             "mask_share": _stats(masks), "edit": "one random_strokes stroke painted over a clean scene"}
    return {"setup": setup, "rows": rows}


def _edit_scores(judge, out: torch.Tensor, original: torch.Tensor, edited, change: str, truth: torch.Tensor,
                 region: torch.Tensor) -> dict:
    """Edit success (the judge reads the new attribute, and every other one unchanged), PSNR to the ground truth,
    and PSNR to the original outside the true region (what should not have changed; MSE floored at 1e-10)."""
    from .evaluate import edit_success, psnr, psnr_outside

    success = edit_success(judge, out, edited, change)
    return {"target_reached": round(success["target"].float().mean().item(), 3),
            "rest_kept": round(success["kept"].float().mean().item(), 3),
            "success": round((success["target"] & success["kept"]).float().mean().item(), 3),
            "psnr_to_truth": _stats(psnr(out, truth)),
            "psnr_outside_region": _stats(psnr_outside(out, original, region))}


def _edit_rows(judge, out: torch.Tensor, original: torch.Tensor, edited, change: str, truth: torch.Tensor,
               region: torch.Tensor, extra: Callable[[list[int]], dict] | None = None) -> list[dict]:
    """``_edit_scores`` split by the scenes' object count: one row per count present, with ``objects`` and
    ``edits``. Two-object rows add ``binding_swapped``, the share the judge reads with some attribute of the two
    objects exchanged (``evaluate.swapped_reading``): the caption's words drawn on the wrong object. ``extra``: more
    of a row's entries, from the indices of its edits."""
    from .evaluate import swapped_reading

    rows = []
    counts = edited.num_objects
    for k in sorted(set(counts.tolist())):
        i = (counts == k).nonzero().flatten().tolist()
        row = {"objects": k, "edits": len(i),
               **_edit_scores(judge, out[i], original[i], edited[i], change, truth[i], region[i])}
        if k >= 2:
            row["binding_swapped"] = round(swapped_reading(judge, out[i], edited[i])["any"].float().mean().item(), 3)
        rows.append({**row, **(extra(i) if extra else {})})
    return rows


def diffedit(quick: bool) -> dict:
    """DiffEdit on edits with a known answer (``data.attribute_edits``), rows split by the scenes' object count
    (``_edit_rows``). Per change and mask: the automatic mask at threshold ratio 3 (diffusers') and 6, with its IoU
    with the true edit region (the object before and after) and the best IoU any per-image threshold on the same
    difference map reaches (``best_threshold_iou``: what the map itself allows); the true region as the mask
    (separating the mask's failures from the decoding's); and no image at all, the new caption sampled from
    scratch with seed 0 (how often the model draws it right by itself)."""
    from . import zoo
    from .editing import diffedit as run
    from .data import attribute_edits
    from .editing.diffedit import difference_map, mask_from_map
    from .evaluate import best_threshold_iou, mask_iou

    n, seed, steps = (6, 6000, 10) if quick else (64, 6000, 50)
    pipe, judge = zoo.load("shapes-unet"), zoo.load("shapes-classifier")
    images, edits = attribute_edits(n, seed)
    rows = []
    for e in edits:
        change, index, part, edited, truth, region = e.change, e.index, e.scenes, e.edited, e.truth, e.region
        x, query, reference = images[index], edited.captions(), part.captions()
        start = time.perf_counter()
        guide = difference_map(pipe, x, target_prompt=query, source_prompt=reference)
        seconds = time.perf_counter() - start
        best = best_threshold_iou(guide, region)
        masks = {"ratio 3": mask_from_map(guide, 3.0), "ratio 6": mask_from_map(guide, 6.0), "true region": region}
        for name, mask in masks.items():
            start = time.perf_counter()
            out = run(pipe, x, target_prompt=query, source_prompt=reference, mask_image=mask,
                      num_inference_steps=steps).images.clamp(-1, 1)
            spent = time.perf_counter() - start + (seconds if name != "true region" else 0.0)
            iou = mask_iou(mask, region)
            masks_of = lambda i: {"mask_iou": _stats(iou[i]), "best_threshold_iou": _stats(best[i]),  # noqa: E731
                                  "mask_share": round(mask[i].mean().item(), 3),
                                  "true_share": round(region[i].mean().item(), 3), "seconds": round(spent, 1)}
            rows += [{"change": change, "mask": name, **row}
                     for row in _edit_rows(judge, out, x, edited, change, truth, region, masks_of)]
        start = time.perf_counter()
        out = pipe.generate(query, num_inference_steps=steps, seed=0).clamp(-1, 1)
        spent = time.perf_counter() - start
        rows += [{"change": change, "mask": "no image", **row, "seconds": round(spent, 1)}
                 for row in _edit_rows(judge, out, x, edited, change, truth, region)]
    setup = {"model": "shapes-unet", "judge": "shapes-classifier", "scenes": n, "seed": seed, "steps": steps,
             "objects_per_scene": "1 or 2 (rows split by count)",
             "mask": "10 maps, strength 0.5, guidance 3 (it cancels in the difference up to rounding)",
             "inpaint_strength": 0.5, "guidance": 3.0,
             "best_threshold_iou": "the best IoU any per-image threshold on the difference map reaches",
             "no_image": "the new caption sampled from scratch, seed 0, guidance 3",
             "binding_swapped": "two-object scenes read with some attribute of the two objects exchanged",
             "outside_region": "PSNR with the MSE floored at 1e-10 (106 dB: identical)"}
    return {"setup": setup, "rows": rows}


def editing_methods(quick: bool) -> dict:
    """Which editing method when: the same edits with a known answer (``data.attribute_edits``, a third each colour, shape, size)
    by DiffEdit (its automatic mask at diffusers' defaults, its guidance at the decoding's 3), SDEdit (strength 0.5), "invert, then regenerate" (DDIM
    inversion under the old caption, decoding under the new one: ``translate_captions``, guidance 1) and Imagic (per
    image: stage 1 and 2 at the defaults, then every eta in ``etas`` from one noise; the comparison takes the eta with
    the most successes), beside "no image" (the new caption sampled from scratch, seed 0: how often the model draws
    it right by itself). Rows are split by the scenes' object count (``_edit_rows``). ``imagic_eta``: Imagic's
    trade-off, edit success against PSNR to the input, per eta. Seconds per edit: Imagic's include its fitting and
    one generation."""
    from . import zoo
    from .data import attribute_edits
    from .editing import diffedit as run_diffedit, imagic, sdedit, translate_captions
    from .evaluate import psnr

    n, seed, steps = (3, 6100, 10) if quick else (18, 6100, 50)
    fit = dict(embed_steps=20, tune_steps=20) if quick else {}
    etas = [0.0, 0.5, 1.0] if quick else [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    pipe, judge = zoo.load("shapes-unet"), zoo.load("shapes-classifier")
    images, edits = attribute_edits(n, seed)
    methods = {
        "diffedit": lambda x, q, r: run_diffedit(pipe, x, target_prompt=q, source_prompt=r,
                                                 num_inference_steps=steps).images,
        "sdedit": lambda x, q, r: sdedit(pipe, x, q, strength=0.5, num_inference_steps=steps, guidance_scale=3.0),
        "invert_regenerate": lambda x, q, r: translate_captions(pipe, x, source_prompt=r, target_prompt=q,
                                                               num_inference_steps=steps),
        "no_image": lambda x, q, r: pipe.generate(q, num_inference_steps=steps, seed=0),
    }
    rows, by_eta, seconds = [], {eta: [] for eta in etas}, {}
    for e in edits:
        change, index, part, edited, truth, region = e.change, e.index, e.scenes, e.edited, e.truth, e.region
        x, query, reference = images[index], edited.captions(), part.captions()
        for name, method in methods.items():
            start = time.perf_counter()
            out = method(x, query, reference).clamp(-1, 1)
            per_edit = round((time.perf_counter() - start) / len(index), 2)
            rows += [{"method": name, "change": change, **row, "seconds_per_edit": per_edit}
                     for row in _edit_rows(judge, out, x, edited, change, truth, region)]
        outs, fitting, generating = [], 0.0, 0.0
        for i in range(len(index)):
            start = time.perf_counter()
            result = imagic(pipe, x[[i]], query[i], seed=i, **fit)
            middle = time.perf_counter()
            outs.append(result.generate(etas, num_inference_steps=steps).clamp(-1, 1))
            fitting, generating = fitting + middle - start, generating + time.perf_counter() - middle
        seconds[change] = (fitting + generating / len(etas)) / len(index)
        for j, eta in enumerate(etas):
            by_eta[eta].append((change, torch.stack([o[j] for o in outs]), x, edited, truth, region))
    imagic_eta = []
    for eta, done in by_eta.items():
        scores = [_edit_scores(judge, out, x, edited, change, truth, region) for change, out, x, edited, truth, region in done]
        weights = [len(d[1]) for d in done]
        total = sum(weights)
        imagic_eta.append({"eta": eta, "edits": total,
                           **{k: round(sum(w * s[k] for w, s in zip(weights, scores)) / total, 3)
                              for k in ("target_reached", "rest_kept", "success")},
                           "psnr_to_input": _stats(torch.cat([psnr(out, x) for _, out, x, *_ in done])),
                           "per_change_success": {d[0]: s["success"] for d, s in zip(done, scores)}})
    best = max(imagic_eta, key=lambda r: (r["success"], -r["eta"]))["eta"]
    for change, out, x, edited, truth, region in by_eta[best]:
        rows += [{"method": f"imagic (eta {best})", "change": change, **row, "seconds_per_edit": round(seconds[change], 2)}
                 for row in _edit_rows(judge, out, x, edited, change, truth, region)]
    setup = {"model": "shapes-unet", "judge": "shapes-classifier", "scenes": n, "seed": seed, "steps": steps,
             "objects_per_scene": "1 or 2 (rows split by count)",
             "guidance": "3 (DiffEdit decoding, SDEdit, Imagic, no image), 1 (invert, regenerate)",
             "no_image": "the new caption sampled from scratch, seed 0",
             "imagic": {"embed_steps": fit.get("embed_steps", 100), "tune_steps": fit.get("tune_steps", 100),
                        "embed_lr": 1e-2, "tune_lr": 2e-6, "etas": etas, "best_eta": best}}
    return {"setup": setup, "rows": rows, "imagic_eta": imagic_eta}


def caption_switch(quick: bool) -> dict:
    """eDiff-I's observation on shapes-unet, no training (Balaji et al. 2022, sec. 4): sample one-object scenes under
    caption A at the noisy levels t >= t_s and under caption B (one attribute changed) below, with
    ``models.ConditionSwitch``, and count how often the judge reads that attribute as A's value or B's. ``share_a``
    = reads A / (reads A or B); the decision level is where it crosses 0.5 as t_s moves (linear between switch
    points): the caption decides an attribute near there, and a switch later than that leaves A's value."""
    from . import zoo
    from .data import ATTRIBUTES, BACKGROUNDS, ShapesWorld
    from .diffusion import sample
    from .evaluate import edit_success
    from .models import ConditionSwitch

    n, steps, levels, attributes = ((4, 8, (700, 400), ("colour", "background")) if quick else
                                    (32, 20, (950, 900, 800, 700, 600, 500, 300), ("background", "position", "colour",
                                                                                  "shape", "size")))
    guidance, seed = 3.0, 3000
    pipe, judge = zoo.load("shapes-unet"), zoo.load("shapes-classifier")
    source = ShapesWorld(resolution=32, max_objects=1).sample(n, seed=seed)
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed + 1))
    guided, sampler = pipe.guided(guidance, batch=n), pipe.sampler(steps)
    run = lambda denoiser, cond=None: sample(denoiser, pipe.schedule, x_T, sampler, cond=cond,  # noqa: E731
                                             progress=False).clamp(-1, 1)
    a = pipe.text_features(source.captions())
    all_a = run(guided, a)
    rows = []
    for attribute in attributes:
        start = time.perf_counter()
        values = len(BACKGROUNDS) if attribute == "background" else len(ATTRIBUTES[attribute])
        old = source.background if attribute == "background" else getattr(source, attribute)[:, 0]
        new = (old + torch.randint(1, values, (n,), generator=g)) % values
        target = source.change(**{attribute: new}) if attribute == "background" else \
            source.change(0, **{attribute: new})
        b = pipe.text_features(target.captions())
        switched = {f"t_s={t_s}": run(ConditionSwitch(guided, [t_s], [b, a], pipe.schedule.T)) for t_s in levels}
        images = {"all B": run(guided, b), **switched, "all A": all_a}
        shares = {}
        for name, y in images.items():
            reads_a = edit_success(judge, y, source, attribute)["target"]
            reads_b = edit_success(judge, y, target, attribute)["target"]
            either = (reads_a | reads_b).float().sum().item()
            shares[name] = {"share_a": round(reads_a.float().sum().item() / either, 3) if either else None,
                            "reads_a": int(reads_a.sum()), "reads_b": int(reads_b.sum())}
        curve = [(pipe.schedule.T, shares["all B"]["share_a"]),  # all B: a switch at T; all A: at 0
                 *((t_s, shares[f"t_s={t_s}"]["share_a"]) for t_s in levels), (0, shares["all A"]["share_a"])]
        decision = None
        for (t1, s1), (t2, s2) in zip(curve, curve[1:]):  # levels fall: the share of A rises
            if s1 is not None and s2 is not None and s1 < 0.5 <= s2:
                decision = round(t1 + (0.5 - s1) / (s2 - s1) * (t2 - t1))
                break
        rows.append({"attribute": attribute, "shares": shares, "decision_level": decision,
                     "seconds": round(time.perf_counter() - start, 1)})
    return {"setup": {"model": "shapes-unet", "judge": "shapes-classifier", "scenes": n, "objects": 1, "seed": seed,
                      "steps": steps, "guidance": guidance, "switch_levels": list(levels),
                      "timesteps": [t for t, _ in sampler.plan(pipe.schedule.T)]}, "rows": rows}


def unidiffuser(quick: bool) -> dict:
    """UniDiffuser's one network against bespoke ones (Bao et al. 2023), on lesson 09's points paired with label codes
    (``toy2d.paired_ring``), where every distribution is known exactly: per training seed, one ``UniToyMLP`` trained
    with ``unidiffuser_loss`` on every pair of levels, and two more of the same size and steps trained for one task
    only (``clean="y"``: text-to-image; ``clean="x"``: image-to-text). Each is sampled with DDIM and scored as the
    lesson scores it: text-to-image, the exact p(asked label | x) of the drawn points; image-to-text, how often the
    drawn code names the true label; the exact joint denoiser through the same sampler gives the reference."""
    from .data import toy2d
    from .diffusion import DDIMSampler, cosine, sample
    from .diffusion.loss import unidiffuser_loss
    from .models import JointMixtureDenoiser, UniDiffuser, UniToyMLP
    from .train import train, warmup_cosine

    seeds, steps, n = ((0,), 300, 400) if quick else ((0, 1, 2), 2000, 1000)
    K, schedule, sampler = 8, cosine(), DDIMSampler(num_steps=25)
    joint, ring = toy2d.paired_ring(K), toy2d.gaussian_ring(K, 2.0, 0.5)
    asked = torch.arange(n) % K
    g = torch.Generator().manual_seed(1)
    x_T, y_T = torch.randn(n, 2, generator=g), torch.randn(n, K, generator=g)
    pairs, true_label = joint.sample(n, torch.Generator().manual_seed(2))

    def score(network, tasks=("text-to-image", "image-to-text")) -> dict:
        uni, out = UniDiffuser(network, schedule.T), {}
        with torch.no_grad():
            if "text-to-image" in tasks:
                x = sample(uni.image(), schedule, x_T, sampler, cond=joint.means[asked, 2:].float(),
                           progress=False)
                out["text-to-image"] = round(ring.posterior(x)[torch.arange(n), asked].mean().item(), 3)
            if "image-to-text" in tasks:
                y = sample(uni.text(), schedule, y_T, sampler, cond=pairs[:, :2], progress=False)
                out["image-to-text"] = round((y.argmax(1) == true_label).float().mean().item(), 3)
        return out

    rows = []
    for seed in seeds:
        row = {"seed": seed}
        for name, clean, tasks in (("one network", None, ("text-to-image", "image-to-text")),
                                   ("text-to-image only", "y", ("text-to-image",)),
                                   ("image-to-text only", "x", ("image-to-text",))):
            data = torch.Generator().manual_seed(seed)
            torch.manual_seed(seed)
            net = UniToyMLP(2, K, width=128)
            start = time.perf_counter()
            def batches(step, data=data):
                z = joint.sample(512, data)[0]
                return z[:, :2], z[:, 2:]

            def loss(m, s, x0, y0, generator, clean=clean):
                return unidiffuser_loss(m, s, x0, y0, generator=generator, clean=clean)

            train(net, schedule, batches, steps, lr=3e-3, seed=seed, lr_factor=warmup_cosine(0, steps), progress=False,
                  loss_fn=loss)
            row[name] = {**score(net, tasks), "train_seconds": round(time.perf_counter() - start, 1)}
        rows.append(row)
    return {"setup": {"data": "toy2d.paired_ring(8)", "network": "UniToyMLP(2, 8, width=128)", "steps": steps,
                      "batch": 512, "lr": "3e-3, cosine to 0", "sampler": "DDIM, 25 steps", "samples": n,
                      "seeds": list(seeds)},
            "exact": score(JointMixtureDenoiser(joint, schedule, 2)), "rows": rows}


def unidiffuser_shapes(quick: bool) -> dict:
    """UniDiffuser on images (Bao et al. 2023): one ``UniUViT`` over 32x32 one-object scenes paired with their caption
    as an attribute vector (``Scenes.attribute_vector``: shape, colour, size, position, background), trained with
    ``unidiffuser_loss`` on every pair of levels (``modality_mean``: the 24-number caption weighs as much as the
    image), against two networks of the same size and steps trained for one direction only (``clean``). On held-out
    scenes, text-to-image: how often shapes-classifier reads each attribute of the caption in the sampled image (its
    reading of the true renders beside it); image-to-text: how often the sampled vector names the rendered scene's
    attributes. The one network also samples with its free guidance (scale 1 + s, s = 2). ``uses_other_modality``:
    each network's noise error at t = 500 given the true partner over that given another scene's (1: ignored). CPU
    minutes are far below the zoo's GPU training, so the absolute numbers are those of an under-trained model: what
    it reaches is the result; the comparison is at equal size and steps."""
    from . import zoo
    from .data import ATTRIBUTES, BACKGROUNDS, ShapesWorld, read_attribute_vector
    from .diffusion import ClassifierFreeGuidance, DDIMSampler, cosine, sample
    from .diffusion.forward import q_sample
    from .diffusion.loss import unidiffuser_loss
    from .evaluate import scene_accuracy
    from .models import UniDiffuser, UniUViT, UViTConfig
    from .train import train, warmup_cosine

    steps, batch, n, ddim = (4, 8, 16, 5) if quick else (1000, 64, 256, 25)
    world, schedule, sampler = ShapesWorld(resolution=32, max_objects=1), cosine(), DDIMSampler(num_steps=ddim)
    cfg = UViTConfig(image_size=32, patch_size=4, hidden=128, depth=5, heads=4, context_dim=24, context_len=1,
                     conv=False)
    judge = zoo.load("shapes-classifier").eval()
    scenes = world.sample(n, seed=777)
    x0, y0 = world.render(scenes)[0], scenes.attribute_vector()
    g = torch.Generator().manual_seed(1)
    x_T, y_T = torch.randn(x0.shape, generator=g), torch.randn(y0.shape, generator=g)
    truth = {k: v[:, 0] if v.ndim == 2 else v for k, v in scenes.labels().items()}

    def shares(correct: dict[str, torch.Tensor]) -> dict:
        return {k: round(v.float().mean().item(), 3) for k, v in correct.items()}

    def text_to_image(denoiser) -> dict:
        images = sample(denoiser, schedule, x_T, sampler, cond=y0, progress=False)
        return shares(scene_accuracy(judge.predict(images.clamp(-1, 1)), scenes))

    def image_to_text(denoiser) -> dict:
        read = read_attribute_vector(sample(denoiser, schedule, y_T, sampler, cond=x0, progress=False))
        correct = {k: read[k] == truth[k] for k in read}
        return shares({**correct, "joint": torch.stack(list(correct.values())).all(0)})

    def other_modality_use(net, clean) -> dict:
        """Does the network read the other modality? Its noise error on held-out pairs at t = 500 with the clean
        partner (t = 0) over that with another scene's partner: 1 when the partner is ignored, below 1 when used."""
        t, g = torch.full((n,), 500), torch.Generator().manual_seed(4)
        eps_x, eps_y, zero, other = torch.randn(x0.shape, generator=g), torch.randn(y0.shape, generator=g), \
            torch.zeros(n, dtype=torch.long), torch.arange(n).roll(1)
        x_t, y_t, out = q_sample(x0, t, eps_x, schedule), q_sample(y0, t, eps_y, schedule), {}
        if clean != "x":
            err = [(net(x_t, y, t, zero)[0] - eps_x).pow(2).mean() for y in (y0, y0[other])]
            out["image_error_ratio"] = round((err[0] / err[1]).item(), 3)
        if clean != "y":
            err = [(net(x, y_t, zero, t)[1] - eps_y).pow(2).mean() for x in (x0, x0[other])]
            out["text_error_ratio"] = round((err[0] / err[1]).item(), 3)
        return out

    rows = []
    for name, clean in (("one network", None), ("text-to-image only", "y"), ("image-to-text only", "x")):
        torch.manual_seed(0)
        net, start = UniUViT(cfg), time.perf_counter()

        def batches(step):
            drawn = world.sample(batch, seed=10_000 + step)
            return world.render(drawn)[0], drawn.attribute_vector()

        def loss(m, s, x, y, generator, clean=clean):
            return unidiffuser_loss(m, s, x, y, generator=generator, clean=clean, modality_mean=True)

        losses = train(net, schedule, batches, steps, lr=1e-3, seed=0, lr_factor=warmup_cosine(min(50, steps // 4), steps),
                       progress=False, loss_fn=loss)
        row, uni = {"network": name, "train_seconds": round(time.perf_counter() - start, 1),
                    "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4)}, UniDiffuser(net.eval(), schedule.T)
        with torch.no_grad():
            row["uses_other_modality"] = other_modality_use(net, clean)
            if clean != "x":
                row["text-to-image"] = text_to_image(uni.image())
            if clean is None:
                row["text-to-image, free guidance s=2"] = text_to_image(
                    ClassifierFreeGuidance(uni.image(torch.Generator().manual_seed(3)), 3.0))
            if clean != "y":
                row["image-to-text"] = image_to_text(uni.text())
        rows.append(row)
    with torch.no_grad():
        ceiling = shares(scene_accuracy(judge.predict(x0), scenes))
    return {"setup": {"data": "ShapesWorld(32, max_objects=1), caption as Scenes.attribute_vector() (24 numbers)",
                      "network": f"UniUViT(patch 4, width 128, depth 5, 4 heads): "
                                 f"{sum(p.numel() for p in net.parameters()):,} parameters",
                      "steps": steps, "batch": batch, "lr": "1e-3, warmup then cosine to 0", "schedule": "cosine",
                      "sampler": f"DDIM, {ddim} steps", "held_out_scenes": n, "seed": 777},
            "judge_on_true_renders": ceiling,
            "chance": {k: round(1 / len(v), 3) for k, v in (*ATTRIBUTES.items(), ("background", BACKGROUNDS))},
            "rows": rows}


def experts(quick: bool) -> dict:
    """eDiff-I's experts from the shipped text U-Net, on the CPU (Balaji et al. 2022, sec. 4.1): ``Experts.split`` copies
    shapes-unet into a low-noise (t < 500) and a high-noise expert, each fine-tuned on its own interval for half the
    steps, against one copy fine-tuned on all levels for all the steps: the same images, the same total steps and
    learning rate (captions kept whole: no caption dropout). Scored on held-out scenes by each model's error (v, its
    prediction type) at fixed levels over that of predicting 0, with the ensemble's gain over the single model paired
    per image (same scene, same noise) and its standard error. Experimental: a few dozen CPU steps are 1-2% of the
    U-Net's training, so the section says whether any effect shows at all; a GPU recipe is the real test."""
    import copy

    from . import zoo
    from .data import ShapesWorld
    from .diffusion.forward import output_from_x0_eps, q_sample
    from .models import Experts
    from .models.text import Tokenizer, caption_ids
    from .train import make_batch, train

    steps, batch, n, levels = (2, 4, 16, (300, 700)) if quick else (60, 32, 256, (50, 300, 700, 950))
    boundary, lr = 500, 2e-5
    pipe = zoo.load("shapes-unet")
    base = pipe.denoiser.float().eval()
    data = zoo.recipe("shapes-unet").replace(batch_size=batch, seed=11, attribute_dropout=0.0)
    schedule, T = pipe.schedule, pipe.schedule.T
    start = time.perf_counter()
    single = copy.deepcopy(base)
    train(single, schedule, lambda step: make_batch(data, step), steps, lr=lr, seed=0, progress=False)
    ensemble = Experts.split(base, [boundary], T)
    for k, (low, high) in enumerate(((0, boundary), (boundary, T))):  # the same images, split between the experts
        offset = k * (steps // 2)
        train(ensemble.experts[k], schedule, lambda step: make_batch(data, offset + step), steps // 2, lr=lr, seed=k,
              t_range=(low, high), progress=False)
    train_seconds = time.perf_counter() - start

    world = ShapesWorld(resolution=32, max_objects=2)
    scenes = world.sample(n, seed=12345)
    x0, ids = world.render(scenes)[0], caption_ids(Tokenizer(), scenes)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(12346))
    rows = []
    with torch.no_grad():
        for level in levels:
            t = torch.full((n,), level)
            x_t = q_sample(x0, t, noise, schedule)
            target = output_from_x0_eps(x0, noise, schedule.abar(t, x0), base.prediction_type)
            power = target.pow(2).mean().item()
            err = {name: (model(x_t, t, ids) - target).pow(2).flatten(1).mean(1)
                   for name, model in (("base", base), ("single", single), ("experts", ensemble))}
            gain = err["single"] - err["experts"]  # > 0: the experts' error is lower
            rows.append({"t": level, "expert": int(level >= boundary),
                         **{f"relative_error_{k}": round(v.mean().item() / power, 5) for k, v in err.items()},
                         "experts_gain": round(gain.mean().item() / power, 5),
                         "experts_gain_se": round(gain.std().item() / n**0.5 / power, 5)})
    return {"setup": {"model": "shapes-unet", "boundary": boundary, "steps_single": steps,
                      "steps_per_expert": steps // 2, "batch": batch, "lr": lr, "precision": "fp32",
                      "held_out_scenes": n, "train_seconds": round(train_seconds, 1)}, "rows": rows}


SECTIONS: dict[str, Callable[[bool], dict]] = {"sdedit": sdedit, "compositing": compositing, "sparse": sparse, "inversion": inversion, "null_text": null_text,
                                               "ddib_2d": ddib_2d, "ddib_images": ddib_images,
                                               "diffedit": diffedit, "editing_methods": editing_methods,
                                               "caption_switch": caption_switch, "unidiffuser": unidiffuser,
                                               "unidiffuser_shapes": unidiffuser_shapes,
                                               "experts": experts}


def report(quick: bool = False, sections: Sequence[str] | None = None) -> dict:
    """Run the named ``sections`` (default: all of ``SECTIONS``) with torch seeded; ``quick``: small samples."""
    if not isinstance(quick, bool):
        raise ValueError(f"quick must be a bool, got {quick!r}")
    names = list(SECTIONS) if sections is None else [check_choice("sections", s, SECTIONS) for s in sections]
    out = {"machine": machine(), "quick": quick, "sections": {}}
    for name in names:
        start = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            out["sections"][name] = {**SECTIONS[name](quick), "seconds": round(time.perf_counter() - start, 1)}
    return out
