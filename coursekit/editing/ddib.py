"""DDIB: translate between domains through the noise space two diffusion models share.

Su, Song, Meng & Ermon, "Dual Diffusion Implicit Bridges for Image-to-Image Translation", ICLR 2023, sec. 3:
encode x with the *source* model's DDIM ODE (inversion, eta = 0) into a latent x_T, then decode x_T with the
*target* model's ODE. The two models are trained apart and never see each other's data; the latent space
is the one they share, N(0, I). Both halves are ODE solves, so the translation is cycle-consistent up to
discretisation: source -> target -> source returns x as the number of steps grows (their sec. 3.2).
A "model" may also be one conditional model under two conditions (their ImageNet setting: one model,
source and target class; here, for images, two captions: ``translate_captions``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .._checks import check_int
from ..diffusion import DDIMInverter, DDIMSampler, Denoiser, NoiseSchedule, invert, prediction_type_of, sample
from ..pipeline import Pipeline
from .inversion import check_captions, check_images, check_pipeline, samplers
from .inversion import invert as invert_images


@torch.no_grad()
def translate(x: torch.Tensor, schedule: NoiseSchedule, source: Denoiser, target: Denoiser, steps: int = 50, *,
              source_cond: Any = None, target_cond: Any = None) -> torch.Tensor:
    """DDIB's translation of ``x`` (a batch from the source domain): DDIM inversion with ``source`` over
    ``steps`` steps, then DDIM sampling from that latent with ``target`` (each reading its own
    ``prediction_type``)."""
    check_int("steps", steps, 1)
    inverter = DDIMInverter(steps, prediction_type=prediction_type_of(source))
    latent = invert(source, schedule, x, inverter, cond=source_cond, progress=False)
    return sample(target, schedule, latent, DDIMSampler(steps, prediction_type=prediction_type_of(target)),
                  cond=target_cond, progress=False)


@torch.no_grad()
def translate_captions(pipe: Pipeline, images: torch.Tensor, source_captions: Sequence[str],
                       target_captions: Sequence[str], steps: int = 50, guidance: float = 1.0) -> torch.Tensor:
    """DDIB with one text-conditioned model: invert ``images`` under their ``source_captions``, then decode
    the latent under ``target_captions`` (one per image), both with classifier-free ``guidance``."""
    check_images(check_pipeline(pipe), images)
    source_captions = check_captions(source_captions, images.shape[0], "source_captions", pipe.tokenizer)
    target_captions = check_captions(target_captions, images.shape[0], "target_captions", pipe.tokenizer)
    inversion = invert_images(pipe, images, source_captions, guidance, steps)
    _, sampler = samplers(pipe, steps)
    x0 = sample(pipe.guided(guidance), pipe.schedule, inversion.noise, sampler, cond=pipe.encode_text(target_captions),
                progress=False)
    return pipe.decode(x0)
