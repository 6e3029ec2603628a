"""DDIM: the non-Markovian sampler with a noise knob eta, and its deterministic inverse.

Song, Meng & Ermon, "Denoising Diffusion Implicit Models", ICLR 2021. With eta = 0 the update is
an Euler step of an ODE (sec. 4.3), so it can be run backwards to encode an image into noise
("DDIM inversion", sec. 5.4 and Table 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._checks import check_choice, check_float
from ._stepping import SamplerSettings, abar_at, check_step_args, step_noise
from .forward import eps_from_x0, x0_eps_from_output
from .schedules import NoiseSchedule

PREVIOUS = ("stride", "next")


def ddim_step(
    model_output: torch.Tensor,
    t: int,
    x_t: torch.Tensor,
    schedule: NoiseSchedule,
    prev_t: int,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
    prediction_type: str = "epsilon",
    clip_sample: float | None = None,
    set_alpha_to_one: bool = True,
    use_clipped_model_output: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step t -> prev_t (prev_t < 0 means "to clean data"). Returns (x_prev, x0_hat).

    Song et al. 2021, eq. 12:
        x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma_t^2) eps_hat + sigma_t z
    with eq. 16: sigma_t = eta * sqrt((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)).
    eta = 0 is deterministic DDIM; eta = 1 gives DDPM's posterior variance. Noise is drawn only
    when eta > 0 (``noise`` if given, else from ``generator``), as diffusers does. For prev_t < 0,
    abar_prev is 1.0, or abar_0 when ``set_alpha_to_one`` is False. ``clip_sample`` clamps x0_hat;
    by default eps_hat stays the model's (diffusers' default), so x0_hat and eps_hat disagree about x_t
    and the part of x0_hat that was clipped away re-enters x_prev through eps_hat.
    ``use_clipped_model_output`` re-derives eps_hat = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t) from
    the clipped x0_hat (diffusers' option of that name), keeping the step on the line through x_t.
    """
    t, prev_t = check_step_args(model_output, t, x_t, schedule, prev_t, prediction_type, clip_sample,
                                noise=noise, generator=generator)
    return _ddim_step(model_output, t, x_t, schedule, prev_t, check_float("eta", eta, 0.0), generator, noise,
                      prediction_type, clip_sample, set_alpha_to_one, use_clipped_model_output)


def _ddim_step(model_output, t, x_t, schedule, prev_t, eta, generator, noise, prediction_type, clip_sample,
               set_alpha_to_one, use_clipped_model_output):
    abar_t = schedule.alphas_cumprod[t]
    abar_prev = abar_at(schedule, prev_t, set_alpha_to_one)

    x0, eps = x0_eps_from_output(model_output, x_t, abar_t, prediction_type)
    if clip_sample is not None:
        x0 = x0.clamp(-clip_sample, clip_sample)
        if use_clipped_model_output:
            eps = eps_from_x0(x_t, x0, abar_t)

    variance = ((1 - abar_prev) / (1 - abar_t)) * (1 - abar_t / abar_prev)  # eq. 16 without eta
    std = eta * variance**0.5
    x_prev = abar_prev**0.5 * x0 + (1 - abar_prev - std**2) ** 0.5 * eps  # eq. 12
    if eta > 0:
        x_prev = x_prev + std * step_noise(noise, model_output, generator)
    return x_prev, x0


def ddim_inverse_step(
    model_output: torch.Tensor,
    t: int,
    x_s: torch.Tensor,
    schedule: NoiseSchedule,
    source_t: int,
    *,
    prediction_type: str = "epsilon",
    clip_sample: float | None = None,
    set_alpha_to_one: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One deterministic DDIM step *up* from level source_t to level t > source_t. Returns (x_t, x0_hat).

    Eq. 12 with eta = 0 solved the other way: x_t = sqrt(abar_t) x0_hat + sqrt(1 - abar_t) eps_hat,
    where x0_hat, eps_hat come from x_s at level source_t. The network cannot be evaluated at x_t,
    which is unknown, so ``model_output`` is its prediction at x_s given timestep t (the Euler
    approximation of sec. 4.3; diffusers' ``DDIMInverseScheduler`` and DiffEdit do the same).
    source_t < 0 means x_s is clean data (abar = 1.0, or abar_0 without ``set_alpha_to_one``).
    """
    t, source_t = check_step_args(
        model_output, t, x_s, schedule, source_t, prediction_type, clip_sample, other_name="source_t"
    )
    if source_t < 0:
        check_inverse_start(prediction_type, set_alpha_to_one)
    return _ddim_inverse_step(model_output, t, x_s, schedule, source_t, prediction_type, clip_sample, set_alpha_to_one)


def _ddim_inverse_step(model_output, t, x_s, schedule, source_t, prediction_type, clip_sample, set_alpha_to_one):
    abar_s = abar_at(schedule, source_t, set_alpha_to_one)
    abar_t = schedule.alphas_cumprod[t]
    x0, eps = x0_eps_from_output(model_output, x_s, abar_s, prediction_type)
    if clip_sample is not None:
        x0 = x0.clamp(-clip_sample, clip_sample)
    return abar_t**0.5 * x0 + (1 - abar_t) ** 0.5 * eps, x0


def check_inverse_start(prediction_type: str, set_alpha_to_one: bool) -> None:
    """Refuse what makes the first inverse step 0 / 0: from clean data at abar = 1 (``set_alpha_to_one``), an
    x0-predicting network's eps_hat = (x - x0_hat) / sqrt(1 - abar) is undefined (diffusers returns NaN)."""
    if prediction_type == "sample" and set_alpha_to_one:
        raise ValueError("set_alpha_to_one must be False to invert an x0-predicting ('sample') network: at abar = 1 "
                         "the first inverse step's eps_hat is 0 / 0")


@dataclass(frozen=True)
class _DDIMSettings(SamplerSettings):
    """What DDIM sampling and inversion share: the levels visited and the step convention.

    ``previous="stride"`` takes every step from t to t - T // num_steps whatever the spacing, which
    is what diffusers' ``DDIMScheduler`` does (with trailing or linspace spacing, or when num_steps
    does not divide T, the step then lands between listed timesteps). ``previous="next"`` steps to
    the next listed timestep, as the paper's sub-sequence tau (sec. 4.2) intends. The two agree for
    leading spacing when num_steps divides T. ``set_alpha_to_one``: see ``ddim_step``.
    """

    previous: str = "stride"
    set_alpha_to_one: bool = True

    def __post_init__(self):
        super().__post_init__()
        check_choice("previous", self.previous, PREVIOUS)

    def pairs(self, T: int) -> list[tuple[int, int]]:
        """(t, lower level of the step at t), in sampling order."""
        ts = self.timesteps(T)
        lower = [t - T // len(ts) for t in ts] if self.previous == "stride" else ts[1:] + [-1]
        return list(zip(ts, lower))


@dataclass(frozen=True)
class DDIMSampler(_DDIMSettings):
    """DDIM sampling over ``num_steps`` steps with noise level ``eta`` (0: deterministic); with
    ``clip_sample``, ``use_clipped_model_output`` re-derives eps from the clipped x0 (see ``ddim_step``)."""

    eta: float = 0.0
    use_clipped_model_output: bool = False

    def __post_init__(self):
        super().__post_init__()
        check_float("eta", self.eta, 0.0)
        if not isinstance(self.use_clipped_model_output, bool):
            raise ValueError(f"use_clipped_model_output must be a bool, got {self.use_clipped_model_output!r}")

    def plan(self, T: int) -> list[tuple[int, int]]:
        """(t, prev_t) for every step: the denoiser is called at t."""
        return self.pairs(T)

    def step(self, model_output, t, prev_t, x, schedule, generator=None):
        """``ddim_step`` with these settings, unchecked: ``sample`` checked the tensors."""
        return _ddim_step(model_output, t, x, schedule, prev_t, self.eta, generator, None, self.prediction_type,
                          self.clip_sample, self.set_alpha_to_one, self.use_clipped_model_output)


@dataclass(frozen=True)
class DDIMInverter(_DDIMSettings):
    """DDIM inversion: the eta = 0 chain run from data up to noise, visiting the timesteps of a
    ``DDIMSampler`` with the same settings in ascending order (diffusers' ``DDIMInverseScheduler``)."""

    def __post_init__(self):
        super().__post_init__()
        check_inverse_start(self.prediction_type, self.set_alpha_to_one)

    def plan(self, T: int) -> list[tuple[int, int]]:
        """(t, source_t) for every step, ascending: the denoiser is called at the current x with t."""
        return self.pairs(T)[::-1]

    def step(self, model_output, t, source_t, x, schedule, generator=None):
        """``ddim_inverse_step`` with these settings, unchecked: ``invert`` checked the tensors."""
        return _ddim_inverse_step(model_output, t, x, schedule, source_t, self.prediction_type, self.clip_sample,
                                  self.set_alpha_to_one)
