"""Imagic: edit one real image by a caption, by fitting an embedding and the model to the image first.

Kawar, Zada, Lang, Tov, Chang, Dekel, Mosseri & Irani, "Imagic: Text-Based Real Image Editing with Diffusion
Models", CVPR 2023, sec. 3. Given an image x and a target caption (what the image should become):

1. **Optimise the embedding.** Start from e_tgt, the target caption's text features; with the model frozen,
   minimise the usual denoising loss on x alone (``diffusion.diffusion_loss``: random t, random noise) over the
   embedding: e_opt is an embedding near e_tgt from which the model reconstructs x.
2. **Fine-tune the model.** Freeze e_opt and minimise the same loss over the model's weights, so that e_opt
   reproduces x faithfully. The pipeline the caller passed is never changed: ``trainable="full"`` trains a copy of
   the network (the text encoder and codec are shared, not copied), for the course's small models;
   ``trainable="lora"`` trains low-rank adapters on the attention projections beside the frozen network
   (``models.lora``), which is what fits Stable Diffusion's 860M-parameter U-Net on a 16 GB GPU (full fine-tuning
   with fp32 Adam needs ~13 GB for weights, gradients and moments alone).
3. **Interpolate.** e(eta) = eta e_tgt + (1 - eta) e_opt, and sample from the fine-tuned model with e(eta)
   (classifier-free guidance against the empty caption). eta = 0 gives back x; towards 1 the target caption wins.

The paper (Imagen, as the course's reference notes record it, not checked against the paper): stage 1 100 steps
at Adam lr 1e-3, stage 2 1500 steps at lr 5e-7, eta about 0.7; the diffusers community pipeline
(``imagic_stable_diffusion.py``, Stable Diffusion): 500 steps at 1e-3, 1000 at 2e-6, and ``alpha`` = 1.2, which
extrapolates past e_tgt. Both train with one noise draw per step. The defaults come from the pipeline
(``pipeline.Defaults``): the course's were measured on its 6.7M-parameter pixel U-Net (``coursekit report
editing_methods``; see ``imagic``'s docstring). Behind a codec (Stable Diffusion's VAE) every stage works on the
image's latents.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .._checks import check_choice, check_float, check_int
from ..diffusion import diffusion_loss
from ..models.lora import LoRA, Adapted, attention_projections
from ..pipeline import IMAGIC_TRAINABLE, Pipeline, check_pipeline


def _check_image(pipe: Pipeline, image) -> torch.Tensor:
    """One image (1, C, R, R), in the model's space (the latents behind a codec)."""
    image = pipe.check_images(image)
    if image.shape[0] != 1:
        raise ValueError(f"image must be one image (1, C, R, R): Imagic fits the model to it; got batch {image.shape[0]}")
    with torch.no_grad():
        return pipe.encode(image.to(pipe.device))


def _check_embedding(pipe: Pipeline, embedding) -> torch.Tensor:
    """One embedding (1, L, width) of the pipeline's text encoder, as ``pipe.text_features`` gives it."""
    e = pipe.check_prompt_embeds(embedding, "embedding")
    if e.shape[0] != 1:
        raise ValueError(f"embedding must be one embedding (1, L, width), got {tuple(e.shape)}")
    return e


def _check_steps_lr(steps: int, lr: float, stage: str) -> None:
    check_int(f"{stage}_steps", steps, 0)
    if check_float(f"{stage}_lr", lr, 0.0) == 0 and steps:
        raise ValueError(f"{stage}_lr must be > 0")


def optimize_embedding(pipe: Pipeline, image: torch.Tensor, embedding: torch.Tensor, *, steps: int, lr: float,
                       batch: int = 1, seed: int = 0, progress: bool = False) -> tuple[torch.Tensor, list[float]]:
    """Stage 1: Adam on ``embedding`` (1, L, width), starting where it is, to minimise the denoising loss of the
    frozen denoiser on ``image`` (``batch`` noise draws per step). Returns (e_opt, the loss at each step). The
    embedding is optimised in float32 whatever the network's dtype."""
    pipe = check_pipeline(pipe)
    _check_steps_lr(steps, lr, "embed")
    x0 = _check_image(pipe, image).expand(check_int("batch", batch, 1), -1, -1, -1)
    g = torch.Generator().manual_seed(check_int("seed", seed, 0))
    e = _check_embedding(pipe, embedding).detach().float().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([e], lr=lr)
    losses = []
    for _ in tqdm(range(steps), desc="imagic: embedding", disable=not progress):
        # sec. 3, eq. 2: e_opt = argmin_e E_{t, eps} || eps - f_theta(x_t, t, e) ||^2 with theta frozen
        loss = diffusion_loss(pipe.denoiser, pipe.schedule, x0, e.expand(batch, -1, -1), generator=g)
        (e.grad,) = torch.autograd.grad(loss, e)  # the denoiser's weights get no gradient
        optimizer.step()
        losses.append(loss.item())
    return e.detach(), losses


def _trainable_copy(pipe: Pipeline, trainable: str, rank: int, generator: torch.Generator):
    """(a denoiser to fine-tune, its parameters to train); the caller's denoiser is left as it is."""
    denoiser, encoder = pipe.denoiser, pipe.encoder
    shared = {id(m) for m in encoder.modules()}
    if trainable == "lora":
        layers = {name: layer for name, layer in attention_projections(denoiser).items() if id(layer) not in shared}
        lora = LoRA(layers, rank, generator=generator)
        return Adapted(denoiser, lora), list(lora.parameters())
    tuned = copy.deepcopy(denoiser, {id(encoder): encoder})  # the network copied, the text encoder shared
    encoder_parameters = {id(p) for p in encoder.parameters()}
    weights = [p for p in tuned.parameters() if id(p) not in encoder_parameters]
    if any(w.dtype != torch.float32 for w in weights):
        raise ValueError("trainable='full' needs float32 weights (Adam's small updates vanish in 16-bit ones); "
                         "use trainable='lora', whose adapters train in float32")
    for w in weights:
        w.requires_grad_(True)
    return tuned, weights


def fine_tune(pipe: Pipeline, image: torch.Tensor, embedding: torch.Tensor, *, steps: int, lr: float,
              trainable: str = "full", lora_rank: int = 4, batch: int = 1, seed: int = 0,
              progress: bool = False) -> tuple[Pipeline, list[float]]:
    """Stage 2: a pipeline whose denoiser Adam has fitted to ``image`` under the frozen ``embedding`` (the same loss
    as stage 1), training a copy of the network (``trainable="full"``) or rank-``lora_rank`` adapters beside it
    (``"lora"``). Returns (that pipeline, the loss at each step); ``pipe`` is unchanged."""
    pipe = check_pipeline(pipe)
    _check_steps_lr(steps, lr, "tune")
    check_choice("trainable", trainable, IMAGIC_TRAINABLE)
    check_int("lora_rank", lora_rank, 1)
    x0 = _check_image(pipe, image).expand(check_int("batch", batch, 1), -1, -1, -1)
    g = torch.Generator().manual_seed(check_int("seed", seed, 0))
    e = _check_embedding(pipe, embedding).detach().float().expand(batch, -1, -1)
    denoiser, weights = _trainable_copy(pipe, trainable, lora_rank, g)
    optimizer = torch.optim.Adam(weights, lr=lr)
    losses = []
    for _ in tqdm(range(steps), desc="imagic: fine-tune", disable=not progress):
        # sec. 3, eq. 3: theta_hat = argmin_theta E_{t, eps} || eps - f_theta(x_t, t, e_opt) ||^2
        loss = diffusion_loss(denoiser, pipe.schedule, x0, e, generator=g)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    for w in weights:
        w.requires_grad_(False)
    return dataclasses.replace(pipe, denoiser=denoiser), losses


def check_eta(eta) -> float:
    """eta >= 0; the paper interpolates (eta in [0, 1]), so above 1 (extrapolating past the target embedding, as
    the community pipeline's alpha = 1.2 does) is allowed with a warning."""
    eta = check_float("eta", eta)
    if eta < 0:
        raise ValueError(f"eta must be >= 0 (0: the optimised embedding, 1: the target caption's), got {eta}")
    if eta > 1:
        warnings.warn(f"eta = {eta} > 1 extrapolates past the target caption's embedding (the paper interpolates, "
                      "eta in [0, 1]; diffusers' community pipeline defaults to 1.2)", stacklevel=3)
    return eta


@dataclass
class Imagic:
    """What stages 1 and 2 produce for one image: ``target`` (e_tgt) and ``optimized`` (e_opt), both (1, L, width),
    the fine-tuned pipeline ``tuned``, and each stage's losses."""

    prompt: str
    target: torch.Tensor
    optimized: torch.Tensor
    tuned: Pipeline
    losses: dict[str, list[float]]

    def embedding(self, eta: float) -> torch.Tensor:
        """e(eta) = eta e_tgt + (1 - eta) e_opt (the paper's interpolation, sec. 3, eq. 4, with eta in [0, 1])."""
        eta = check_eta(eta)
        return eta * self.target + (1 - eta) * self.optimized

    @torch.no_grad()
    def generate(self, etas: Sequence[float], *, guidance_scale: float | None = None, num_inference_steps: int = 50,
                 seed: int = 0, progress: bool = False) -> torch.Tensor:
        """Stage 3: one image per eta (len(etas), C, R, R), all from the same noise (``seed``), by the fine-tuned
        model guided with ``guidance_scale`` (None: the pipeline's default) against the empty caption."""
        if isinstance(etas, (int, float)) or len(etas) == 0:
            raise ValueError(f"etas must be a non-empty list of numbers, got {etas!r}")
        cond = torch.cat([self.embedding(eta) for eta in etas])
        return self.tuned.generate_from(cond, guidance_scale=guidance_scale, num_inference_steps=num_inference_steps,
                                        seed=seed, shared_noise=True, progress=progress)


def imagic(pipe: Pipeline, image: torch.Tensor, prompt: str, *, embed_steps: int | None = None,
           embed_lr: float | None = None, tune_steps: int | None = None, tune_lr: float | None = None,
           trainable: str | None = None, lora_rank: int = 4, batch: int = 1, seed: int = 0,
           progress: bool = False) -> Imagic:
    """Stages 1 and 2 of Imagic for ``image`` (1, C, R, R) in [-1, 1] and the target ``prompt``; then
    ``.generate(etas)`` is stage 3. ``embed_steps``/``embed_lr`` and ``tune_steps``/``tune_lr``: each stage's Adam
    steps and learning rate; ``trainable``: what stage 2 trains, "full" or "lora" (rank ``lora_rank``); ``batch``
    noise draws per step (the paper: 1). Every None is the pipeline's default (``pipeline.Defaults``); a ``trainable``
    other than the pipeline's needs its own ``tune_lr`` (a rate tuned for one is wrong for the other).

    The course's defaults, measured on shapes-unet (6 edits, one image each; 25-step sampling at eta 0, 0.2, ..., 1):
    with the paper's embedding lr 1e-3, 100 steps barely move e_opt from e_tgt (with no fine-tuning, eta = 0 already
    drew the target caption's scene, 15-27 dB from the input), and fine-tuning at 1e-5 for 100 steps fits the model
    to the image under every embedding (eta = 1 stayed 27-33 dB from the input; no edit happened); at 1e-6 too little
    of the image is kept (18-35 dB at eta = 0). Embedding lr 1e-2 with fine-tuning at 2e-6 gives the trade-off:
    27-35 dB at eta = 0, the new attribute read at eta = 0.8 on 4 of 6. ``coursekit report editing_methods``
    measures the trade-off on 18.
    """
    pipe = check_pipeline(pipe)
    d = pipe.defaults
    _check_image(pipe, image)
    trainable = check_choice("trainable", d.imagic_trainable if trainable is None else trainable, IMAGIC_TRAINABLE)
    if tune_lr is None and trainable != d.imagic_trainable:
        raise ValueError(f"tune_lr must be given with trainable={trainable!r}: the pipeline's default rate is for "
                         f"{d.imagic_trainable!r}")
    embed_steps = d.imagic_embed_steps if embed_steps is None else embed_steps
    embed_lr = d.imagic_embed_lr if embed_lr is None else embed_lr
    tune_steps = d.imagic_tune_steps if tune_steps is None else tune_steps
    tune_lr = d.imagic_tune_lr if tune_lr is None else tune_lr
    _check_steps_lr(embed_steps, embed_lr, "embed")
    _check_steps_lr(tune_steps, tune_lr, "tune")
    check_int("lora_rank", lora_rank, 1)
    check_int("batch", batch, 1)
    check_int("seed", seed, 0)
    (prompt,) = pipe.check_prompt([prompt] if isinstance(prompt, str) else prompt, 1)
    with torch.no_grad():
        target = pipe.text_features([prompt])  # e_tgt
    optimized, embed_losses = optimize_embedding(pipe, image, target, steps=embed_steps, lr=embed_lr, batch=batch,
                                                 seed=seed, progress=progress)
    tuned, tune_losses = fine_tune(pipe, image, optimized, steps=tune_steps, lr=tune_lr, trainable=trainable,
                                   lora_rank=lora_rank, batch=batch, seed=seed + 1, progress=progress)
    return Imagic(prompt, target, optimized, tuned, {"embedding": embed_losses, "fine_tune": tune_losses})
