"""Classifier-free guidance as a wrapper that turns a conditional denoiser into a guided one."""

from __future__ import annotations

from typing import Any

import torch

from .._checks import check_float
from .sampling import Denoiser


class ClassifierFreeGuidance:
    """eps~ = eps(x_t, t, uncond) + scale * (eps(x_t, t, cond) - eps(x_t, t, uncond)).

    Ho & Salimans, "Classifier-Free Diffusion Guidance", 2022, eq. 6, written with diffusers'
    ``guidance_scale`` s = 1 + w: scale 1 is the conditional model, 0 the unconditional one, and
    s > 1 pushes samples towards what distinguishes ``cond`` from ``uncond``. The result meets the
    denoiser protocol, so every sampler and editing method accepts it. ``scale`` may be changed
    between calls (e.g. by a widget). A tensor ``uncond`` with batch 1 stands for every sample; when
    ``cond`` and ``uncond`` are tensors of one shape, both predictions come from one batched call.
    """

    def __init__(self, denoiser: Denoiser, scale: float, uncond: Any = None):
        if not callable(denoiser):
            raise ValueError(f"denoiser must be callable, got {type(denoiser).__name__}")
        self.denoiser = denoiser
        self.scale = check_float("scale", scale)
        self.uncond = uncond

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        scale = check_float("scale", self.scale)
        if scale == 1:
            return self.denoiser(x_t, t, cond)
        uncond = self.uncond
        if isinstance(uncond, torch.Tensor) and uncond.shape[0] == 1 and x_t.shape[0] > 1:
            uncond = uncond.expand(x_t.shape[0], *uncond.shape[1:])
        if scale == 0:
            return self.denoiser(x_t, t, uncond)
        if isinstance(uncond, torch.Tensor) and isinstance(cond, torch.Tensor) and uncond.shape == cond.shape:
            both = self.denoiser(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([uncond, cond]))
            eps_uncond, eps_cond = both.chunk(2)
        else:
            eps_uncond, eps_cond = self.denoiser(x_t, t, uncond), self.denoiser(x_t, t, cond)
        return eps_uncond + scale * (eps_cond - eps_uncond)

    def __repr__(self) -> str:
        return f"ClassifierFreeGuidance(scale={self.scale}, uncond={self.uncond!r}, denoiser={self.denoiser!r})"
