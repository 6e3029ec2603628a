"""The DDPM ancestral sampler: draw x_prev from the posterior q(x_prev | x_t, x_0 = x0_hat).

Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020, eqs. 6-7 and Alg. 2.
With a strided chain t > prev the per-step beta is beta' = 1 - abar_t / abar_prev (as in
diffusers' ``DDPMScheduler`` and Nichol & Dhariwal 2021, sec. 4 "respacing").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._checks import check_choice
from ._stepping import SamplerSettings, abar_at, check_step_args, step_noise
from .forward import x0_eps_from_output
from .schedules import NoiseSchedule

VARIANCE_TYPES = ("fixed_small", "fixed_large")


def ddpm_step(
    model_output: torch.Tensor,
    t: int,
    x_t: torch.Tensor,
    schedule: NoiseSchedule,
    prev_t: int,
    *,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
    variance_type: str = "fixed_small",
    prediction_type: str = "epsilon",
    clip_sample: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ancestral step t -> prev_t (prev_t < t; -1 means "to clean data"). Returns (x_prev, x0_hat).

    Posterior mean (Ho et al. 2020, eq. 7):
        mu = sqrt(abar_prev) beta' / (1 - abar_t) * x0_hat + sqrt(alpha') (1 - abar_prev) / (1 - abar_t) * x_t
    Variance: ``fixed_small`` = beta~ = (1 - abar_prev) / (1 - abar_t) * beta' (the true posterior
    variance), ``fixed_large`` = beta' (sec. 3.2 discusses both). Noise is added only when t > 0;
    it is ``noise`` if given, else drawn from ``generator`` after the model call, as diffusers does.
    ``clip_sample``: clamp x0_hat to [-clip_sample, clip_sample] (off when None).
    """
    t, prev_t = check_step_args(model_output, t, x_t, schedule, prev_t, prediction_type, clip_sample,
                                noise=noise, generator=generator)
    check_choice("variance_type", variance_type, VARIANCE_TYPES)
    return _ddpm_step(model_output, t, x_t, schedule, prev_t, generator, noise, variance_type, prediction_type,
                      clip_sample)


def _ddpm_step(model_output, t, x_t, schedule, prev_t, generator, noise, variance_type, prediction_type, clip_sample):
    abar_t = schedule.alphas_cumprod[t]
    abar_prev = abar_at(schedule, prev_t)
    beta_prod_t, beta_prod_prev = 1 - abar_t, 1 - abar_prev
    alpha_step = abar_t / abar_prev  # alpha' of the (possibly strided) step
    beta_step = 1 - alpha_step  # beta'

    x0, _ = x0_eps_from_output(model_output, x_t, abar_t, prediction_type)
    if clip_sample is not None:
        x0 = x0.clamp(-clip_sample, clip_sample)

    x0_coeff = (abar_prev**0.5 * beta_step) / beta_prod_t
    xt_coeff = alpha_step**0.5 * beta_prod_prev / beta_prod_t
    x_prev = x0_coeff * x0 + xt_coeff * x_t  # eq. 7, the posterior mean
    if t > 0:
        z = step_noise(noise, model_output, generator)
        if variance_type == "fixed_small":
            variance = torch.clamp(beta_prod_prev / beta_prod_t * beta_step, min=1e-20)  # beta~, eq. 7
        else:
            variance = beta_step
        x_prev = x_prev + variance**0.5 * z
    return x_prev, x0


@dataclass(frozen=True)
class DDPMSampler(SamplerSettings):
    """Ancestral DDPM sampling over ``num_steps`` of the T training steps.

    The previous level of each step is the next timestep in the list (diffusers' convention for
    DDPM), so every step spans exactly the gap the spacing gives it.
    """

    num_steps: int = 1000
    variance_type: str = "fixed_small"

    def __post_init__(self):
        super().__post_init__()
        check_choice("variance_type", self.variance_type, VARIANCE_TYPES)

    def plan(self, T: int) -> list[tuple[int, int]]:
        """(t, prev_t) for every step: the denoiser is called at t."""
        ts = self.timesteps(T)
        return list(zip(ts, ts[1:] + [-1]))

    def step(self, model_output, t, prev_t, x, schedule, generator=None):
        """``ddpm_step`` with these settings, unchecked: ``sample`` checked the tensors."""
        return _ddpm_step(model_output, t, x, schedule, prev_t, generator, None, self.variance_type,
                          self.prediction_type, self.clip_sample)
