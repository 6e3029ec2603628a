"""DiffEdit: the model finds the region a caption change should edit, then only that region is regenerated.

Couairon, Verbeek, Schwenk & Cord, "DiffEdit: Diffusion-based Semantic Image Editing with Mask Guidance",
ICLR 2023. Three steps:

1. **Mask.** Noise the image to half strength, predict the noise under the query caption Q and under the
   reference caption R, and average |eps_Q - eps_R| over ``maps`` noise draws and the channels: where the two
   captions disagree about the image is where the edit belongs. diffusers' ``StableDiffusionDiffEditPipeline.
   generate_mask`` (the defaults here: 10 maps, strength 0.5, guidance 7.5) clamps the map at 3x its mean,
   divides by that and binarises at 0.5. diffusers takes the mean over the whole batch; here it is per image, so
   that an image's mask does not depend on the others in its batch.
2. **Encode.** DDIM-invert the image to the level the encoding ratio r picks (``start_index``, as SDEdit's
   strength), conditioned on R (at guidance 1: the round trip the inversion report measures best).
3. **Decode.** DDIM from there under Q with guidance; after every step the region outside the mask is replaced by
   the inverted latent of the level reached, so outside the mask the result is the image exactly (diffusers lags
   one level behind and ends on the latent inverted to t = 1; the paper's step 3 matches this one).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._checks import check_float, check_int, check_mask, check_tensor
from ..diffusion import invert as invert_chain, q_sample, sample
from ..diffusion.forward import randn, x0_eps_from_output
from ..pipeline import Pipeline
from .inversion import check_captions, check_images, check_pipeline, samplers
from .sdedit import FromLevel, start_index


def mask_from_map(guide: torch.Tensor, ratio: float = 3.0) -> torch.Tensor:
    """Binarise a difference map (B, 1, H, W) as diffusers does: clamp at ``ratio`` x its mean (per image), divide
    by that and keep what is above 0.5, i.e. the pixels whose difference exceeds ratio / 2 x the mean."""
    check_tensor("guide", guide, ndim=4)
    if check_float("ratio", ratio) <= 0:
        raise ValueError(f"ratio must be > 0, got {ratio}")
    magnitude = guide.mean(dim=(1, 2, 3), keepdim=True) * ratio
    return (torch.minimum(guide, magnitude) / magnitude > 0.5).to(guide.dtype)


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
                          ratio: float = 3.0) -> torch.Tensor:
    """DiffEdit's mask (B, 1, H, W) in {0, 1}: ``mask_from_map`` of ``map_from_predictions``."""
    return mask_from_map(map_from_predictions(eps_query, eps_reference, maps), ratio)


def _check_pair(pipe: Pipeline, query, reference, batch: int) -> tuple[list[str], list[str]]:
    query = check_captions(query, batch, "query", pipe.tokenizer)
    reference = check_captions(reference, batch, "reference", pipe.tokenizer)
    same = [i for i, (q, r) in enumerate(zip(query, reference)) if q == r]
    if same:
        raise ValueError(f"query and reference must differ (they name the edit), but are equal for images {same}")
    return query, reference


@torch.no_grad()
def difference_map(pipe: Pipeline, images: torch.Tensor, query: Sequence[str], reference: Sequence[str] | None = None,
                   maps: int = 10, strength: float = 0.5, guidance: float = 7.5, steps: int = 50,
                   seed: int = 0) -> torch.Tensor:
    """Where the ``query`` captions would change ``images`` (B, C, R, R), before thresholding: the map (B, 1, R, R)
    of |eps_Q - eps_R| over ``maps`` noise draws at the level ``strength`` picks of a ``steps``-step sampler, both
    captions guided with ``guidance`` against the empty caption (``reference`` None: the empty caption itself).
    The guidance scale cancels in the difference up to rounding (g (eps_Q - eps_R), later divided by its mean): it
    is kept for diffusers' signature, and matters only with ``reference`` None."""
    pipe = check_pipeline(pipe)
    images = check_images(pipe, images)
    query, reference = _check_pair(pipe, query, reference, images.shape[0])
    check_int("maps", maps, 1)
    check_float("guidance", guidance)
    steps = check_int("steps", steps, 1)
    t = pipe.sampler(steps).plan(pipe.schedule.T)[start_index(steps, strength)][0]
    x0 = pipe.encode(images.to(pipe.device)).repeat_interleave(maps, dim=0)
    x_t = q_sample(x0, t, randn(x0.shape, torch.Generator().manual_seed(check_int("seed", seed, 0)), x0.device,
                                x0.dtype), pipe.schedule)
    levels = torch.full((len(x_t),), t, dtype=torch.long, device=x_t.device)
    guided, abar = pipe.guided(guidance), pipe.schedule.abar(levels, x_t)

    def eps(captions: list[str]) -> torch.Tensor:
        out = guided(x_t, levels, pipe.encode_text([c for c in captions for _ in range(maps)]))
        return x0_eps_from_output(out, x_t, abar, pipe.prediction_type)[1]

    return map_from_predictions(eps(query), eps(reference), maps)


def diffedit_mask(pipe: Pipeline, images: torch.Tensor, query: Sequence[str], reference: Sequence[str] | None = None,
                  ratio: float = 3.0, **options) -> torch.Tensor:
    """DiffEdit's mask (B, 1, R, R) in {0, 1}: ``mask_from_map`` of ``difference_map`` (``options``: its maps,
    strength, guidance, steps and seed; diffusers' defaults 10 maps, strength 0.5, guidance 7.5)."""
    return mask_from_map(difference_map(pipe, images, query, reference, **options), ratio)


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
def diffedit(pipe: Pipeline, images: torch.Tensor, query: Sequence[str], reference: Sequence[str] | None = None,
             mask: torch.Tensor | None = None, encode_ratio: float = 0.5, steps: int = 50, guidance: float = 3.0,
             mask_options: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Edit ``images`` (B, C, R, R) from the ``reference`` captions (what they show) to the ``query`` captions:
    returns (edited images, the mask used). ``mask`` (B or 1, 1, R, R) in [0, 1] overrides the automatic one
    (``diffedit_mask`` with ``mask_options``); ``encode_ratio`` in (0, 1] is how far up the images are inverted;
    the decoding is guided with ``guidance``."""
    pipe = check_pipeline(pipe)
    images = check_images(pipe, images)
    query, reference = _check_pair(pipe, query, reference, images.shape[0])
    steps = check_int("steps", steps, 1)
    if not 0 < check_float("encode_ratio", encode_ratio) <= 1:
        raise ValueError(f"encode_ratio must be in (0, 1], got {encode_ratio}")
    start = start_index(steps, encode_ratio)
    if mask is None:
        mask = diffedit_mask(pipe, images, query, reference, **(mask_options or {}))
    else:
        mask = check_mask("mask", mask, images.shape[0], (pipe.resolution, pipe.resolution))
    inverter, sampler = samplers(pipe, steps)
    x0 = pipe.encode(images.to(pipe.device))
    latents = {}
    invert_chain(pipe.guided(1.0), pipe.schedule, x0, _FirstSteps(inverter, steps - start),
                 cond=pipe.encode_text(reference), callback=lambda i, t, x, x0_hat: latents.__setitem__(t, x),
                 progress=False)
    t_start = sampler.plan(pipe.schedule.T)[start][0]
    x = sample(pipe.guided(check_float("guidance", guidance)), pipe.schedule, latents[t_start],
               FromLevel(sampler, start, lambda level: x0 if level < 0 else latents[level], mask.to(x0)),
               cond=pipe.encode_text(query), progress=False)
    return pipe.decode(x), mask
