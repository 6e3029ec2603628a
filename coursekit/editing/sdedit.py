"""SDEdit: edit or synthesise from a guide by noising it part of the way and denoising from there.

Meng, He, Song, Song, Wu, Zhu & Ermon, "SDEdit: Guided Image Synthesis and Editing with Stochastic
Differential Equations", ICLR 2022. A guide (a stroke painting, a crude composite) is not an image the model
would draw, but once noised to a level t0 it is hard to tell from a noised image that the model would; the
reverse process from t0 then ends on a realistic image that keeps what the noise did not wash out. Small t0:
faithful to the guide; large t0: realistic but free (the paper recommends t0 in [0.3, 0.6] of T).

``strength`` follows diffusers' img2img (``StableDiffusionImg2ImgPipeline.get_timesteps``): of a sampler of
``steps`` steps, the last k = int(steps * strength) run, from the guide noised to the first of them with
one noise draw (``q_sample``, diffusers' ``add_noise``).

Compositing (``mask``): where the mask is 0 the result is kept on the guide's own noisy trajectory,
q(x_t | guide) with that same noise draw, after every step, so only the masked region (1) is generated and
the seams are blended by the model. The official code (``ermongroup/SDEdit``, mask 1 = keep) resets the kept
pixels to the level the step started from, one level behind; here they are reset to the level the step
reached, so the last step returns the guide exactly outside the mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._checks import check_choice, check_float, check_int, check_mask
from ..diffusion import DDPMSampler, q_sample, sample
from ..diffusion.forward import randn
from ..pipeline import Pipeline
from .inversion import check_captions, check_images, check_pipeline


def start_index(steps: int, strength: float) -> int:
    """Where SDEdit enters a ``steps``-step sampler's timesteps: steps - min(int(steps * strength), steps)."""
    check_int("steps", steps, 1)
    if not 0 < check_float("strength", strength) <= 1:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    k = min(int(steps * strength), steps)
    if k == 0:
        raise ValueError(f"strength {strength} of {steps} steps runs no step: raise strength or steps")
    return steps - k


class FromLevel:
    """The sampler ``sampler`` entered at step ``start`` of its plan (meets the sampler protocol); with ``mask``,
    after every step the region where the mask is 0 is put back on the kept trajectory: ``keep(level)`` is the
    kept image at that level (level -1: the clean image). SDEdit keeps q(x_t | guide, its noise); DiffEdit keeps
    the DDIM-inverted latents."""

    def __init__(self, sampler, start: int, keep=None, mask: torch.Tensor | None = None):
        self.sampler, self.start = sampler, check_int("start", start, 0)
        if (keep is None) != (mask is None):
            raise ValueError("give keep and mask together: the mask says where the kept trajectory is used")
        self.keep, self.mask = keep, mask

    @property
    def prediction_type(self) -> str | None:
        return getattr(self.sampler, "prediction_type", None)

    def plan(self, T: int) -> list[tuple[int, int]]:
        return self.sampler.plan(T)[self.start:]

    def step(self, model_output, t, prev_t, x, schedule, generator=None):
        x_prev, x0 = self.sampler.step(model_output, t, prev_t, x, schedule, generator)
        if self.mask is None:
            return x_prev, x0
        return self.mask * x_prev + (1 - self.mask) * self.keep(prev_t), x0


@torch.no_grad()
def sdedit(pipe: Pipeline, guide: torch.Tensor, captions: Sequence[str] | None = None, strength: float = 0.5,
           steps: int | None = None, guidance: float = 1.0, seed: int = 0, sampler=None,
           mask: torch.Tensor | None = None, progress: bool = False) -> torch.Tensor:
    """SDEdit the ``guide`` images (B, C, R, R) in [-1, 1]: noise them to the level ``strength`` picks in the
    sampler's timesteps and denoise under ``captions`` (None: the empty caption) with classifier-free
    ``guidance``. ``sampler``: "ddim" (``pipe.sampler``, the default), "ddpm" (ancestral, as the paper), or a
    sampler object (then leave ``steps`` out); ``steps``: 50 unless given. ``mask`` (B or 1, 1, R, R) in [0, 1]:
    generate only where it is 1, keep the guide where it is 0 (compositing). The noise and the DDPM steps'
    noise come from ``seed``."""
    pipe = check_pipeline(pipe)
    guide = check_images(pipe, guide, "guide")
    captions = check_captions(captions, guide.shape[0], tokenizer=pipe.tokenizer)
    check_float("guidance", guidance)
    if sampler is not None and not isinstance(sampler, str):
        if steps is not None:
            raise ValueError("give steps or a sampler object, not both: a sampler carries its own number of steps")
        steps = check_int("sampler.num_steps", getattr(sampler, "num_steps", None), 1)
    else:
        steps = 50 if steps is None else check_int("steps", steps, 1)
        kind = check_choice("sampler", sampler or "ddim", ("ddim", "ddpm"))
        sampler = pipe.sampler(steps) if kind == "ddim" else DDPMSampler(
            steps, prediction_type=pipe.prediction_type, clip_sample=1.0)
    start = start_index(steps, strength)
    if mask is not None:
        check_mask("mask", mask, guide.shape[0], (pipe.resolution, pipe.resolution))
    generator = torch.Generator().manual_seed(check_int("seed", seed, 0))
    x0 = pipe.encode(guide.to(pipe.device))
    noise = randn(x0.shape, generator, x0.device, x0.dtype)
    t0 = sampler.plan(pipe.schedule.T)[start][0]
    kept = lambda level: x0 if level < 0 else q_sample(x0, level, noise, pipe.schedule)  # noqa: E731
    resumed = FromLevel(sampler, start) if mask is None else FromLevel(sampler, start, kept, mask.to(x0))
    x = sample(pipe.guided(guidance), pipe.schedule, q_sample(x0, t0, noise, pipe.schedule), resumed,
               cond=pipe.encode_text(captions), generator=generator, progress=progress)
    return pipe.decode(x)
