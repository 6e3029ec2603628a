"""Imagic: edit one real image by a caption, by fitting an embedding and the model to the image first.

Kawar, Zada, Lang, Tov, Chang, Dekel, Mosseri & Irani, "Imagic: Text-Based Real Image Editing with Diffusion
Models", CVPR 2023, sec. 3. Given an image x and a target caption (what the image should become):

1. **Optimise the embedding.** Start from e_tgt, the target caption's text features; with the model frozen,
   minimise the usual denoising loss on x alone (``diffusion.diffusion_loss``: random t, random noise) over the
   embedding: e_opt is an embedding near e_tgt from which the model reconstructs x.
2. **Fine-tune the model.** Freeze e_opt and minimise the same loss over the model's weights, so that e_opt
   reproduces x faithfully. Here on a copy: the pipeline the caller passed is never changed.
3. **Interpolate.** e(eta) = eta e_tgt + (1 - eta) e_opt, and sample from the fine-tuned model with e(eta)
   (classifier-free guidance against the empty caption). eta = 0 gives back x; towards 1 the target caption wins.

The paper (Imagen, as the course's reference notes record it, not checked against the paper): stage 1 100 steps
at Adam lr 1e-3, stage 2 1500 steps at lr 5e-7, eta about 0.7; the diffusers community pipeline
(``imagic_stable_diffusion.py``, Stable Diffusion): 500 steps at 1e-3, 1000 at 2e-6, and ``alpha`` = 1.2, which
extrapolates past e_tgt. Both train with one noise draw per step. The defaults here are for the course's
6.7M-parameter pixel U-Net, measured on shapes edits (``coursekit report editing_methods``): see
``imagic``'s docstring.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .._checks import check_float, check_int, check_tensor
from ..diffusion import diffusion_loss
from ..pipeline import Pipeline
from .inversion import check_captions, check_images, check_pipeline


def _check_image(pipe: Pipeline, image) -> torch.Tensor:
    image = check_images(pipe, image, "image")
    if image.shape[0] != 1:
        raise ValueError(f"image must be one image (1, C, R, R): Imagic fits the model to it; got batch {image.shape[0]}")
    return image.to(pipe.device)


def _check_embedding(pipe: Pipeline, embedding) -> torch.Tensor:
    """Text features (1, L, width) of the pipeline's encoder, as ``pipe.text_features`` gives them."""
    encoder = pipe.denoiser.encoder
    return check_tensor("embedding", embedding, shape=(1, encoder.max_length, encoder.width))


def _check_steps_lr(steps: int, lr: float, stage: str) -> None:
    check_int(f"{stage}_steps", steps, 0)
    if check_float(f"{stage}_lr", lr, 0.0) == 0 and steps:
        raise ValueError(f"{stage}_lr must be > 0")


def optimize_embedding(pipe: Pipeline, image: torch.Tensor, embedding: torch.Tensor, steps: int, lr: float,
                       batch: int = 1, seed: int = 0, progress: bool = False) -> tuple[torch.Tensor, list[float]]:
    """Stage 1: Adam on ``embedding`` (1, L, width), starting where it is, to minimise the denoising loss of the
    frozen denoiser on ``image`` (``batch`` noise draws per step). Returns (e_opt, the loss at each step)."""
    _check_steps_lr(steps, lr, "embed")
    x0 = _check_image(pipe, image).expand(check_int("batch", batch, 1), -1, -1, -1)
    g = torch.Generator().manual_seed(check_int("seed", seed, 0))
    e = _check_embedding(pipe, embedding).detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([e], lr=lr)
    losses = []
    for _ in tqdm(range(steps), desc="imagic: embedding", disable=not progress):
        loss = diffusion_loss(pipe.denoiser, pipe.schedule, x0, e.expand(batch, -1, -1), generator=g)
        (e.grad,) = torch.autograd.grad(loss, e)  # the denoiser's weights get no gradient
        optimizer.step()
        losses.append(loss.item())
    return e.detach(), losses


def fine_tune(pipe: Pipeline, image: torch.Tensor, embedding: torch.Tensor, steps: int, lr: float, batch: int = 1,
              seed: int = 0, progress: bool = False) -> tuple[Pipeline, list[float]]:
    """Stage 2: a copy of ``pipe`` whose denoiser Adam has fitted to ``image`` under the frozen ``embedding``
    (the same loss as stage 1). Returns (the copy, the loss at each step); ``pipe`` is unchanged."""
    _check_steps_lr(steps, lr, "tune")
    x0 = _check_image(pipe, image).expand(check_int("batch", batch, 1), -1, -1, -1)
    g = torch.Generator().manual_seed(check_int("seed", seed, 0))
    tuned = dataclasses.replace(pipe, denoiser=copy.deepcopy(pipe.denoiser))
    weights = [p for p in tuned.denoiser.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(weights, lr=lr)
    e = _check_embedding(pipe, embedding).detach().expand(batch, -1, -1)
    losses = []
    for _ in tqdm(range(steps), desc="imagic: fine-tune", disable=not progress):
        loss = diffusion_loss(tuned.denoiser, tuned.schedule, x0, e, generator=g)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    tuned.denoiser.requires_grad_(False)
    return tuned, losses


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

    caption: str
    target: torch.Tensor
    optimized: torch.Tensor
    tuned: Pipeline
    losses: dict[str, list[float]]

    def embedding(self, eta: float) -> torch.Tensor:
        """e(eta) = eta e_tgt + (1 - eta) e_opt (the paper's interpolation, sec. 3, with eta in [0, 1])."""
        eta = check_eta(eta)
        return eta * self.target + (1 - eta) * self.optimized

    @torch.no_grad()
    def generate(self, etas: Sequence[float], guidance: float = 3.0, steps: int = 50, seed: int = 0) -> torch.Tensor:
        """Stage 3: one image per eta (len(etas), C, R, R), all from the same noise (``seed``), by the fine-tuned
        model guided with ``guidance`` against the empty caption."""
        if isinstance(etas, (int, float)) or len(etas) == 0:
            raise ValueError(f"etas must be a non-empty list of numbers, got {etas!r}")
        cond = torch.cat([self.embedding(eta) for eta in etas])
        return self.tuned.generate_from(cond, guidance, steps, seed, shared_noise=True)


def imagic(pipe: Pipeline, image: torch.Tensor, caption: str, embed_steps: int = 100, embed_lr: float = 1e-2,
           tune_steps: int = 100, tune_lr: float = 2e-6, batch: int = 1, seed: int = 0,
           progress: bool = False) -> Imagic:
    """Stages 1 and 2 of Imagic for ``image`` (1, C, R, R) in [-1, 1] and the target ``caption``; then
    ``.generate(etas)`` is stage 3. ``embed_steps``/``embed_lr`` and ``tune_steps``/``tune_lr``: each stage's Adam
    steps and learning rate; ``batch`` noise draws per step (the paper: 1).

    The defaults, measured on shapes-unet (6 edits, one image each; 25-step sampling at eta 0, 0.2, ..., 1): with the
    paper's embedding lr 1e-3, 100 steps barely move e_opt from e_tgt (with no fine-tuning, eta = 0 already drew the
    target caption's scene, 15-27 dB from the input), and fine-tuning at 1e-5 for 100 steps fits the model to the
    image under every embedding (eta = 1 stayed 27-33 dB from the input; no edit happened); at 1e-6 too little of
    the image is kept (18-35 dB at eta = 0). Embedding lr 1e-2 with fine-tuning at 2e-6 gives the trade-off: 27-35 dB
    at eta = 0, the new attribute read at eta = 0.8 on 4 of 6. ``coursekit report editing_methods`` measures the trade-off on 18.
    """
    pipe = check_pipeline(pipe)
    _check_image(pipe, image)
    _check_steps_lr(embed_steps, embed_lr, "embed")
    _check_steps_lr(tune_steps, tune_lr, "tune")
    check_int("batch", batch, 1)
    check_int("seed", seed, 0)
    (caption,) = check_captions([caption] if isinstance(caption, str) else caption, 1, "caption", pipe.tokenizer)
    with torch.no_grad():
        target = pipe.text_features([caption])
    optimized, embed_losses = optimize_embedding(pipe, image, target, embed_steps, embed_lr, batch, seed, progress)
    tuned, tune_losses = fine_tune(pipe, image, optimized, tune_steps, tune_lr, batch, seed + 1, progress)
    return Imagic(caption, target, optimized, tuned, {"embedding": embed_losses, "fine_tune": tune_losses})
