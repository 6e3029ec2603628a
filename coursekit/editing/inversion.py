"""DDIM inversion on a pipeline: an image back to the noise that generates it, and the way back.

Song, Meng & Ermon, "Denoising Diffusion Implicit Models", ICLR 2021, sec. 5.4: with eta = 0 DDIM is an
Euler discretisation of an ODE, so the chain run upwards (``diffusion.DDIMInverter``) encodes an image into
x_T, and DDIM sampling from x_T with the same settings decodes it. Each upward step evaluates the network
at the current, less noisy x with the next timestep, so the round trip is exact only as the number of
steps S grows (the mean squared error falls roughly as 1/S^2; Table 2). Inversion may be conditioned on a caption and
guided; with classifier-free guidance the round trip degrades (``null_text.py`` repairs that). Behind a codec
(Stable Diffusion's VAE) the chain runs on the latents: ``Inversion.latents[0]`` is the encoded image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .._checks import check_float
from ..diffusion import ClassifierFreeGuidance, invert as invert_chain, sample
from ..pipeline import Pipeline, check_pipeline


@dataclass
class Inversion:
    """A DDIM inversion: ``latents[i]`` is x at level ``timesteps[i]`` in the model's space, from the encoded images
    (level -1) up to the noise x_T (``noise``), with what ``reconstruct`` needs to run the chain back: the prompt,
    the guidance scale, the number of steps and, from null-text inversion, the unconditional text features to guide
    with at each timestep (``null_embeds``; None: the empty caption's)."""

    latents: list[torch.Tensor]
    timesteps: list[int]
    prompt: list[str]
    guidance_scale: float
    num_inference_steps: int
    null_embeds: dict[int, torch.Tensor] | None = None

    @property
    def noise(self) -> torch.Tensor:
        return self.latents[-1]


@torch.no_grad()
def invert(pipe: Pipeline, image: torch.Tensor, prompt: Sequence[str] | None = None, *, num_inference_steps: int = 50,
           guidance_scale: float = 1.0, progress: bool = False) -> Inversion:
    """Encode ``image`` (B, C, R, R) in [-1, 1] into the noise a DDIM sampler maps back to it.

    ``prompt`` conditions every network call (None: the empty caption); ``guidance_scale`` is the classifier-free
    scale (1, the default: the conditional model alone, the exact ODE). The inverter takes the pipeline's timesteps
    and settings (``Pipeline.inversion_samplers``). Returns the whole trajectory (``Inversion``).
    """
    pipe = check_pipeline(pipe)
    pipe.check_images(image)
    prompt = pipe.check_prompt(prompt, image.shape[0])
    guidance_scale = check_float("guidance_scale", guidance_scale)
    inverter, _ = pipe.inversion_samplers(num_inference_steps)
    x0 = pipe.encode(image.to(pipe.device))
    latents, levels = [x0], [-1]

    def record(i, t, x, x0_hat):
        latents.append(x)
        levels.append(t)

    # sec. 5.4: x_t = sqrt(abar_t) x0_hat(x_s) + sqrt(1 - abar_t) eps(x_s, t), level by level from s = -1 upwards
    invert_chain(pipe.guided(guidance_scale, image.shape[0]), pipe.schedule, x0, inverter, cond=pipe.text_features(prompt),
                 callback=record, progress=progress)
    return Inversion(latents, levels, prompt, guidance_scale, num_inference_steps)


@torch.no_grad()
def reconstruct(pipe: Pipeline, inversion: Inversion, *, progress: bool = False) -> torch.Tensor:
    """Decode an inversion's noise with the DDIM sampler that retraces it (same steps, prompt, guidance scale and,
    after null-text inversion, the per-step unconditional features); returns images."""
    pipe = check_pipeline(pipe)
    if not isinstance(inversion, Inversion):
        raise ValueError(f"inversion must be what editing.invert returns, got {type(inversion).__name__}")
    _, sampler = pipe.inversion_samplers(inversion.num_inference_steps)
    if inversion.null_embeds is None:
        denoiser = pipe.guided(inversion.guidance_scale, len(inversion.prompt))
    else:
        denoiser = NullPerStep(pipe, inversion.guidance_scale, inversion.null_embeds)
    x0 = sample(denoiser, pipe.schedule, inversion.noise, sampler, cond=pipe.text_features(inversion.prompt),
                progress=progress)
    return pipe.decode(x0)


class NullPerStep(ClassifierFreeGuidance):
    """Classifier-free guidance whose unconditional input is ``null_embeds[t]`` at timestep t (text features,
    as null-text inversion optimised them); ``cond`` must then be text features too."""

    def __init__(self, pipe: Pipeline, scale: float, null_embeds: dict[int, torch.Tensor]):
        super().__init__(pipe.denoiser, scale)
        self.null_embeds = null_embeds

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond) -> torch.Tensor:
        level = int(t[0])
        if level not in self.null_embeds:
            raise ValueError(f"the null-text inversion has no features for timestep {level}: reconstruct with its steps")
        self.uncond = self.null_embeds[level]
        return super().__call__(x_t, t, cond)
