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

from .._checks import check_float, check_int
from ..diffusion import DDIMInverter, DDIMSampler, Denoiser, NoiseSchedule, invert, prediction_type_of, sample
from ..pipeline import Pipeline, check_pipeline
from .inversion import invert as invert_images


@torch.no_grad()
def translate(x: torch.Tensor, schedule: NoiseSchedule, source: Denoiser, target: Denoiser, *,
              num_inference_steps: int = 50, source_cond: Any = None, target_cond: Any = None) -> torch.Tensor:
    """DDIB's translation of ``x`` (a batch of samples from the source domain: points or images): DDIM inversion
    with ``source`` over ``num_inference_steps`` steps, then DDIM sampling from that latent with ``target`` (each
    reading its own ``prediction_type``)."""
    check_int("num_inference_steps", num_inference_steps, 1)
    inverter = DDIMInverter(num_inference_steps, prediction_type=prediction_type_of(source))
    latent = invert(source, schedule, x, inverter, cond=source_cond, progress=False)  # sec. 3: x -> x_T, source ODE
    return sample(target, schedule, latent, DDIMSampler(num_inference_steps, prediction_type=prediction_type_of(target)),
                  cond=target_cond, progress=False)  # x_T -> y, the target's ODE


@torch.no_grad()
def translate_captions(pipe: Pipeline, image: torch.Tensor, *, source_prompt: Sequence[str],
                       target_prompt: Sequence[str], num_inference_steps: int = 50, guidance_scale: float = 1.0,
                       progress: bool = False) -> torch.Tensor:
    """DDIB with one text-conditioned model: invert ``image`` under its ``source_prompt``, then decode the latent
    under ``target_prompt`` (one per image), both with classifier-free ``guidance_scale`` (1, the default: the exact
    ODE both ways, as DDIB's cycle consistency needs). Returns images."""
    pipe = check_pipeline(pipe)
    pipe.check_images(image)
    source_prompt = pipe.check_prompt(source_prompt, image.shape[0], "source_prompt")
    target_prompt = pipe.check_prompt(target_prompt, image.shape[0], "target_prompt")
    guidance_scale = check_float("guidance_scale", guidance_scale)
    inversion = invert_images(pipe, image, source_prompt, num_inference_steps=num_inference_steps,
                              guidance_scale=guidance_scale, progress=progress)  # the source's ODE, up
    _, sampler = pipe.inversion_samplers(num_inference_steps)
    x0 = sample(pipe.guided(guidance_scale, image.shape[0]), pipe.schedule, inversion.noise, sampler,
                cond=pipe.text_features(target_prompt), progress=progress)  # the target's ODE, down
    return pipe.decode(x0)
