"""A denoiser without a network: the exact noise prediction of a Gaussian mixture."""

from __future__ import annotations

import torch

from .._checks import check_int, check_tensor, check_timesteps
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


class JointMixtureDenoiser:
    """(eps_x, eps_y) = denoiser(x_t, y_t, t_x, t_y): the exact noise of a mixture over (x, y) = the first ``split``
    coordinates and the rest, each noised at its own level (UniDiffuser's two timesteps; ``models.unidiffuser``).

    The mixture's covariances must be diagonal: then coordinates noised at different levels stay a Gaussian
    mixture, and ``GaussianMixture.eps`` with one abar per coordinate is exact. ``UniDiffuser(this, T)`` gives
    the true marginals, conditionals and joint through the same calls as a trained network.
    """

    prediction_type = "epsilon"

    def __init__(self, mixture: GaussianMixture, schedule: NoiseSchedule, split: int):
        if not isinstance(mixture, GaussianMixture):
            raise ValueError(f"mixture must be a GaussianMixture, got {type(mixture).__name__}")
        if mixture.eigvecs is not None:
            raise ValueError("mixture must have diagonal covariances (K, D): with full ones x and y noised at two "
                             "levels are no longer a mixture this class can score")
        if not isinstance(schedule, NoiseSchedule):
            raise ValueError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
        self.mixture, self.schedule = mixture, schedule
        self.dim_x = check_int("split", split, 1, mixture.D)
        self.dim_y = mixture.D - split
        self.x_shape, self.y_shape = (self.dim_x,), (self.dim_y,)

    def __call__(self, x_t: torch.Tensor, y_t: torch.Tensor, t_x: torch.Tensor,
                 t_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_tensor("x_t", x_t, shape=(None, self.dim_x))
        B = x_t.shape[0]
        check_tensor("y_t", y_t, shape=(B, self.dim_y))
        abar = self.schedule.alphas_cumprod.double()
        levels = [abar[check_timesteps(name, t, self.schedule.T, batch=B).expand(B).cpu()][:, None].expand(B, d)
                  for name, t, d in (("t_x", t_x, self.dim_x), ("t_y", t_y, self.dim_y))]
        eps = self.mixture.eps(torch.cat([x_t, y_t], 1), torch.cat(levels, 1))
        return tuple(e.to(x_t.dtype) for e in eps.split([self.dim_x, self.dim_y], 1))

    def __repr__(self) -> str:
        return f"JointMixtureDenoiser({self.mixture!r}, {self.schedule!r}, split={self.dim_x})"
