"""A denoiser without a network: the exact noise prediction of a Gaussian mixture."""

from __future__ import annotations

import torch

from .._checks import check_tensor, check_timesteps
from ..data.mixture import GaussianMixture
from ..diffusion.schedules import NoiseSchedule


class MixtureDenoiser:
    """eps = denoiser(x_t, t, cond): the Bayes-optimal eps of ``mixture`` noised by ``schedule``.

    ``cond`` None gives the unconditional denoiser; a (B,) long tensor of component indices gives
    the class-conditional one (so ``ClassifierFreeGuidance(denoiser, s, uncond=None)`` can be
    studied exactly). Computed in float64, returned in x_t's dtype. See ``GaussianMixture.eps``.
    """

    def __init__(self, mixture: GaussianMixture, schedule: NoiseSchedule):
        if not isinstance(mixture, GaussianMixture):
            raise ValueError(f"mixture must be a GaussianMixture, got {type(mixture).__name__}")
        if not isinstance(schedule, NoiseSchedule):
            raise ValueError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
        self.mixture = mixture
        self.schedule = schedule

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        shape = (None, *self.mixture.event_shape)
        check_tensor("x_t", x_t, shape=shape)
        t = check_timesteps("t", t, self.schedule.T, batch=x_t.shape[0]).expand(x_t.shape[0])
        abar = self.schedule.alphas_cumprod.double()[t.cpu()]
        eps = self.mixture.eps(x_t.reshape(x_t.shape[0], -1), abar, component=cond)
        return eps.to(x_t.dtype).reshape(x_t.shape)

    def __repr__(self) -> str:
        return f"MixtureDenoiser({self.mixture!r}, {self.schedule!r})"
