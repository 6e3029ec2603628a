"""SDEdit: edit or synthesise from a guide by noising it part of the way and denoising from there.

Meng, He, Song, Song, Wu, Zhu & Ermon, "SDEdit: Guided Image Synthesis and Editing with Stochastic
Differential Equations", ICLR 2022. A guide (a stroke painting, a crude composite) is not an image the model
would draw, but once noised to a level t0 it is hard to tell from a noised image that the model would; the
reverse process from t0 then ends on a realistic image that keeps what the noise did not wash out. Small t0:
faithful to the guide; large t0: realistic but free (the paper recommends t0 in [0.3, 0.6] of T).

``strength`` follows diffusers' img2img (``StableDiffusionImg2ImgPipeline.get_timesteps``): of a sampler of
``steps`` steps, the last k = int(steps * strength) run, from the guide noised to the first of them with
one noise draw (``q_sample``, diffusers' ``add_noise``).

Compositing (``mask_image``): where the mask is 0 the result is kept on the guide's own noisy trajectory,
q(x_t | guide) with that same noise draw, after every step, so only the masked region (1) is generated and
the seams are blended by the model. The official code (``ermongroup/SDEdit``, mask 1 = keep) resets the kept
pixels to the level the step started from, one level behind; here they are reset to the level the step
reached, so the last step returns the guide exactly outside the mask (behind a VAE: the guide's latents, which
decode to the guide only as closely as the VAE reconstructs it). ``keep_outside`` then puts the guide's own pixels
back wherever no latent cell was regenerated (diffusers' inpainting pipeline pastes the original back, with the pixel
mask itself, when it crops around the mask: ``padding_mask_crop``, ``apply_overlay``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._checks import check_choice, check_float, check_int, check_tensor
from ..diffusion import q_sample, sample
from ..diffusion.forward import randn
from ..pipeline import Pipeline, check_pipeline


def start_index(steps: int, strength: float) -> int:
    """Where SDEdit enters a ``steps``-step sampler's timesteps: steps - min(int(steps * strength), steps)."""
    check_int("steps", steps, 1)
    if not 0 < check_float("strength", strength) <= 1:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    k = min(int(steps * strength), steps)
    if k == 0:
        raise ValueError(f"strength {strength} of {steps} steps runs no step: raise strength or steps")
    return steps - k


def entry_level(pipe: Pipeline, num_inference_steps: int, strength: float) -> int:
    """The timestep t0 SDEdit noises the guide to: the first level the pipeline's sampler runs after
    ``start_index`` (with leading spacing, T (floor(S s) - 1) / S, a little below s T)."""
    return check_pipeline(pipe).sampler(num_inference_steps).plan(pipe.schedule.T)[
        start_index(num_inference_steps, strength)][0]


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
def sdedit(pipe: Pipeline, image: torch.Tensor, prompt: Sequence[str] | None = None, *, strength: float = 0.5,
           num_inference_steps: int | None = None, guidance_scale: float | None = None, seed: int = 0, sampler=None,
           mask_image: torch.Tensor | None = None, progress: bool = False) -> torch.Tensor:
    """SDEdit ``image`` (B, C, R, R) in [-1, 1], the guide: noise it to the level ``strength`` picks in the sampler's
    timesteps and denoise under ``prompt`` (None: the empty caption) with classifier-free ``guidance_scale`` (None:
    the pipeline's default). ``sampler``: "ddim" (``pipe.sampler``, the default), "ddpm" (ancestral, as the paper),
    or a sampler object (then leave ``num_inference_steps`` out; otherwise 50 unless given). ``mask_image`` (B or 1,
    1, H, W) in [0, 1], at the images' or the model's resolution: generate only where it is 1, keep the guide where
    it is 0 (compositing). The noise and the DDPM steps' noise come from ``seed``. Returns images."""
    pipe = check_pipeline(pipe)
    image = pipe.check_images(image)
    prompt = pipe.check_prompt(prompt, image.shape[0])
    guidance_scale = check_float("guidance_scale", pipe.defaults.guidance_scale if guidance_scale is None
                                 else guidance_scale)
    if sampler is not None and not isinstance(sampler, str):
        if num_inference_steps is not None:
            raise ValueError("give num_inference_steps or a sampler object, not both: a sampler carries its own "
                             "number of steps")
        steps = check_int("sampler.num_steps", getattr(sampler, "num_steps", None), 1)
    else:
        steps = 50 if num_inference_steps is None else check_int("num_inference_steps", num_inference_steps, 1)
        kind = check_choice("sampler", sampler or "ddim", ("ddim", "ddpm"))
        sampler = pipe.sampler(steps) if kind == "ddim" else pipe.ddpm_sampler(steps)
    start = start_index(steps, strength)
    mask = None if mask_image is None else pipe.mask_to_model(mask_image, image.shape[0])
    generator = torch.Generator().manual_seed(check_int("seed", seed, 0))
    x0 = pipe.encode(image.to(pipe.device))
    noise = randn(x0.shape, generator, x0.device, x0.dtype)
    t0 = sampler.plan(pipe.schedule.T)[start][0]
    # sec. 3 (Algorithm 1): x(t0) ~ N(sqrt(abar_t0) x_guide, (1 - abar_t0) I), one draw of the noise ...
    x_t0 = q_sample(x0, t0, noise, pipe.schedule)
    # ... with a mask, the kept region stays on the guide's own noisy trajectory q(x_t | x_guide), same noise
    kept = lambda level: x0 if level < 0 else q_sample(x0, level, noise, pipe.schedule)  # noqa: E731
    resumed = FromLevel(sampler, start) if mask is None else FromLevel(sampler, start, kept, mask.to(x0))
    # ... then the reverse process from t0 to 0 under the prompt
    x = sample(pipe.guided(guidance_scale, image.shape[0]), pipe.schedule, x_t0, resumed, cond=pipe.text_features(prompt),
               generator=generator, progress=progress)
    return pipe.decode(x)


def keep_outside(pipe: Pipeline, image: torch.Tensor, edited: torch.Tensor, mask_image: torch.Tensor) -> torch.Tensor:
    """``image``'s own pixels wherever the edit kept the model's input, ``edited``'s where any of it was regenerated.

    Behind a VAE a masked edit keeps the latents outside the mask exactly, but decoding them gives the image only as
    closely as the VAE reconstructs it, and the decoder spreads each regenerated latent cell into its neighbours'
    pixels. Pasting the original back restores every pixel outside the regenerated cells exactly (a seam may show at
    their border). The region is ``pipe.mask_to_model(mask_image) > 0`` brought to the images' resolution
    (``pipe.mask_to_image``: each latent cell covers ``codec.factor`` x ``codec.factor`` pixels). ``image``, ``edited``: (B, C, R, R) at the pipeline's
    resolution; ``mask_image`` as ``sdedit`` takes it."""
    pipe = check_pipeline(pipe)
    image = pipe.check_images(image)
    check_tensor("edited", edited, shape=tuple(image.shape))
    region = pipe.mask_to_image((pipe.mask_to_model(mask_image, image.shape[0]) > 0).to(image.dtype))
    return torch.where(region.to(image.device) > 0, edited, image)
