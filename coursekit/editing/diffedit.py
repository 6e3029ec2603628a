"""DiffEdit: the model finds the region a caption change should edit, then only that region is regenerated.

Couairon, Verbeek, Schwenk & Cord, "DiffEdit: Diffusion-based Semantic Image Editing with Mask Guidance",
ICLR 2023. Three steps:

1. **Mask.** Noise the image to half strength, predict the noise under the query caption Q (``target_prompt``)
   and under the reference caption R (``source_prompt``), and average |eps_Q - eps_R| over ``num_maps_per_mask``
   noise draws and the channels: where the two captions disagree about the image is where the edit belongs.
   diffusers' ``StableDiffusionDiffEditPipeline.generate_mask`` (its defaults here: 10 maps, strength 0.5,
   thresholding ratio 3) clamps the map at 3x its mean, divides by that and binarises at 0.5. diffusers takes the
   mean over the whole batch; here it is per image, so that an image's mask does not depend on the others in its
   batch. The mask is at the model's resolution (behind a VAE: the latents', as diffusers').
2. **Encode.** DDIM-invert the image to the level the encoding ratio r (``inpaint_strength``) picks
   (``start_index``, as SDEdit's strength), conditioned on R at guidance 1: the round trip the inversion report
   measures best (diffusers' ``invert`` guides at 7.5 by default).
3. **Decode.** DDIM from there under Q with guidance; after every step the region outside the mask is replaced by
   the inverted latent of the level reached, so outside the mask the result is the image exactly (diffusers lags
   one level behind and ends on the latent inverted to t = 1; the paper's step 3 matches this one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .._checks import check_float, check_int, check_tensor
from ..diffusion import ClassifierFreeGuidance, invert as invert_chain, q_sample, sample
from ..diffusion.forward import randn, x0_eps_from_output
from ..pipeline import Pipeline, check_pipeline
from .sdedit import FromLevel, entry_level, start_index


def mask_from_map(guidance_map: torch.Tensor, mask_thresholding_ratio: float = 3.0) -> torch.Tensor:
    """Binarise a difference map (B, 1, H, W) as diffusers does: clamp at ``mask_thresholding_ratio`` x its mean (per
    image), divide by that and keep what is above 0.5, i.e. the pixels whose difference exceeds ratio / 2 x the mean."""
    check_tensor("guidance_map", guidance_map, ndim=4)
    if check_float("mask_thresholding_ratio", mask_thresholding_ratio) <= 0:
        raise ValueError(f"mask_thresholding_ratio must be > 0, got {mask_thresholding_ratio}")
    magnitude = guidance_map.mean(dim=(1, 2, 3), keepdim=True) * mask_thresholding_ratio
    return (torch.minimum(guidance_map, magnitude) / magnitude > 0.5).to(guidance_map.dtype)


def map_from_predictions(eps_query: torch.Tensor, eps_reference: torch.Tensor, maps: int) -> torch.Tensor:
    """DiffEdit's difference map (B, 1, H, W) from noise predictions (B * maps, C, H, W) under the query and the
    reference caption (``maps`` consecutive rows per image): |eps_Q - eps_R| averaged over the maps and channels."""
    check_int("maps", maps, 1)
    if eps_query.shape != eps_reference.shape or eps_query.ndim != 4 or eps_query.shape[0] % maps:
        raise ValueError(f"eps_query and eps_reference must both be (B * maps, C, H, W) with maps={maps}, got "
                         f"{tuple(eps_query.shape)} and {tuple(eps_reference.shape)}")
    B = eps_query.shape[0] // maps
    return (eps_query - eps_reference).abs().reshape(B, maps, *eps_query.shape[1:]).mean(dim=(1, 2))[:, None]


def mask_from_predictions(eps_query: torch.Tensor, eps_reference: torch.Tensor, maps: int,
                          mask_thresholding_ratio: float = 3.0) -> torch.Tensor:
    """DiffEdit's mask (B, 1, H, W) in {0, 1}: ``mask_from_map`` of ``map_from_predictions``."""
    return mask_from_map(map_from_predictions(eps_query, eps_reference, maps), mask_thresholding_ratio)


def _check_pair(pipe: Pipeline, target_prompt, source_prompt, batch: int) -> tuple[list[str], list[str]]:
    target_prompt = pipe.check_prompt(target_prompt, batch, "target_prompt")
    source_prompt = pipe.check_prompt(source_prompt, batch, "source_prompt")
    same = [i for i, (q, r) in enumerate(zip(target_prompt, source_prompt)) if q == r]
    if same:
        raise ValueError(f"target_prompt and source_prompt must differ (they name the edit), but are equal for images "
                         f"{same}")
    return target_prompt, source_prompt


@torch.no_grad()
def difference_map(pipe: Pipeline, image: torch.Tensor, *, target_prompt: Sequence[str],
                   source_prompt: Sequence[str] | None = None, num_maps_per_mask: int = 10,
                   mask_encode_strength: float = 0.5, guidance_scale: float | None = None,
                   num_inference_steps: int = 50, seed: int = 0) -> torch.Tensor:
    """Where ``target_prompt`` would change ``image`` (B, C, R, R), before thresholding: the map (B, 1, h, w) at the
    model's resolution of |eps_Q - eps_R| over ``num_maps_per_mask`` noise draws (from ``seed``) at the level
    ``mask_encode_strength`` picks of a ``num_inference_steps``-step sampler, both prompts guided with
    ``guidance_scale`` (None: the pipeline's default) against the empty caption (``source_prompt`` None: the empty
    caption itself). The guidance scale cancels up to rounding: the difference is g (eps_Q - eps_R) of the unguided
    predictions (with ``source_prompt`` None too, where the guided eps_R is the unconditional one), and the mask
    divides the map by its mean."""
    pipe = check_pipeline(pipe)
    image = pipe.check_images(image)
    target_prompt, source_prompt = _check_pair(pipe, target_prompt, source_prompt, image.shape[0])
    maps = check_int("num_maps_per_mask", num_maps_per_mask, 1)
    guidance_scale = check_float("guidance_scale", pipe.defaults.guidance_scale if guidance_scale is None
                                 else guidance_scale)
    steps = check_int("num_inference_steps", num_inference_steps, 1)
    t = entry_level(pipe, steps, mask_encode_strength)
    x0 = pipe.encode(image.to(pipe.device)).repeat_interleave(maps, dim=0)
    x_t = q_sample(x0, t, randn(x0.shape, torch.Generator().manual_seed(check_int("seed", seed, 0)), x0.device,
                                x0.dtype), pipe.schedule)  # step 1: the image noised to half strength, maps draws
    levels = torch.full((len(x_t),), t, dtype=torch.long, device=x_t.device)
    uncond = pipe.text_features([""] * image.shape[0]).repeat_interleave(maps, dim=0)  # as diffusers batches it
    guided = ClassifierFreeGuidance(pipe.denoiser, guidance_scale, uncond=uncond)
    abar = pipe.schedule.abar(levels, x_t)

    def eps(prompt: list[str]) -> torch.Tensor:
        out = guided(x_t, levels, pipe.text_features(prompt).repeat_interleave(maps, dim=0))
        return x0_eps_from_output(out, x_t, abar, pipe.prediction_type)[1]

    return map_from_predictions(eps(target_prompt), eps(source_prompt), maps)  # step 1: |eps_Q - eps_R|, averaged


def diffedit_mask(pipe: Pipeline, image: torch.Tensor, *, target_prompt: Sequence[str],
                  source_prompt: Sequence[str] | None = None, mask_thresholding_ratio: float = 3.0,
                  **options) -> torch.Tensor:
    """DiffEdit's mask (B, 1, h, w) in {0, 1} at the model's resolution: ``mask_from_map`` of ``difference_map``
    (``options``: its num_maps_per_mask, mask_encode_strength, guidance_scale, num_inference_steps and seed)."""
    guidance_map = difference_map(pipe, image, target_prompt=target_prompt, source_prompt=source_prompt, **options)
    return mask_from_map(guidance_map, mask_thresholding_ratio)


@dataclass
class DiffEditResult:
    """What ``diffedit`` returns: the edited ``images`` (B, C, R, R) and the ``mask`` it used (B or 1, 1, h, w) at
    the model's resolution (1: regenerated)."""

    images: torch.Tensor
    mask: torch.Tensor


class _FirstSteps:
    """The first ``k`` steps of a sampler's plan (the inversion up to the encoding ratio's level)."""

    def __init__(self, sampler, k: int):
        self.sampler, self.k = sampler, k
        self.prediction_type = sampler.prediction_type

    def plan(self, T: int) -> list[tuple[int, int]]:
        return self.sampler.plan(T)[:self.k]

    def step(self, *args):
        return self.sampler.step(*args)


@torch.no_grad()
def diffedit(pipe: Pipeline, image: torch.Tensor, *, target_prompt: Sequence[str],
             source_prompt: Sequence[str] | None = None, mask_image: torch.Tensor | None = None,
             inpaint_strength: float = 0.5, num_inference_steps: int = 50, guidance_scale: float | None = None,
             num_maps_per_mask: int = 10, mask_encode_strength: float = 0.5, mask_thresholding_ratio: float = 3.0,
             seed: int = 0, progress: bool = False) -> DiffEditResult:
    """Edit ``image`` (B, C, R, R) from ``source_prompt`` (what it shows; None: the empty caption) to ``target_prompt``.
    ``mask_image`` (B or 1, 1, H, W) in [0, 1], at the images' or the model's resolution, overrides the automatic
    mask (``diffedit_mask`` with ``num_maps_per_mask``, ``mask_encode_strength``, ``mask_thresholding_ratio`` and
    ``seed``); ``inpaint_strength`` in (0, 1] is the encoding ratio, how far up the image is inverted; the decoding
    is guided with ``guidance_scale`` (None: the pipeline's default). Returns a ``DiffEditResult``."""
    pipe = check_pipeline(pipe)
    image = pipe.check_images(image)
    target_prompt, source_prompt = _check_pair(pipe, target_prompt, source_prompt, image.shape[0])
    steps = check_int("num_inference_steps", num_inference_steps, 1)
    if not 0 < check_float("inpaint_strength", inpaint_strength) <= 1:
        raise ValueError(f"inpaint_strength must be in (0, 1], got {inpaint_strength}")
    guidance_scale = check_float("guidance_scale", pipe.defaults.guidance_scale if guidance_scale is None
                                 else guidance_scale)
    start = start_index(steps, inpaint_strength)
    if mask_image is None:  # step 1
        mask = diffedit_mask(pipe, image, target_prompt=target_prompt, source_prompt=source_prompt,
                             mask_thresholding_ratio=mask_thresholding_ratio, num_maps_per_mask=num_maps_per_mask,
                             mask_encode_strength=mask_encode_strength, guidance_scale=guidance_scale,
                             num_inference_steps=steps, seed=seed)
    else:
        mask = pipe.mask_to_model(mask_image, image.shape[0])
    inverter, sampler = pipe.inversion_samplers(steps)
    x0 = pipe.encode(image.to(pipe.device))
    latents = {}
    # step 2: DDIM-encode under R at guidance 1 up to the level r picks, keeping every level's latent
    invert_chain(pipe.guided(1.0, image.shape[0]), pipe.schedule, x0, _FirstSteps(inverter, steps - start),
                 cond=pipe.text_features(source_prompt), callback=lambda i, t, x, x0_hat: latents.__setitem__(t, x),
                 progress=progress)
    t_start = sampler.plan(pipe.schedule.T)[start][0]
    # step 3: DDIM-decode under Q with guidance; outside the mask, the encoded latent of the level reached
    x = sample(pipe.guided(guidance_scale, image.shape[0]), pipe.schedule, latents[t_start],
               FromLevel(sampler, start, lambda level: x0 if level < 0 else latents[level], mask.to(x0)),
               cond=pipe.text_features(target_prompt), progress=progress)
    return DiffEditResult(pipe.decode(x), mask)
