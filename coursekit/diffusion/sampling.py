"""The sampling loop shared by every sampler, and DDIM inversion with the same loop run upwards.

A denoiser is any callable ``out = denoiser(x_t, t, cond)`` with x_t (B, ...) float, t (B,) long
in [0, T) and a model-specific ``cond`` (or None); ``out`` is eps, x_0 or v as the denoiser's
``prediction_type`` says (ARCHITECTURE.md, "The one protocol"). A sampler (``DDPMSampler``,
``DDIMSampler``, ``DDIMInverter``) says which levels to visit (``plan``) and how to take one step
(``step``, which reads ``out`` with the sampler's ``prediction_type``); this loop calls the denoiser
between the two, and checks the inputs once so that the steps need not.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import torch
from tqdm.auto import tqdm

from .._checks import check_generator, check_tensor, check_timesteps
from .ddim import DDIMInverter, DDIMSampler
from .forward import prediction_type_of, x0_eps_from_output
from .schedules import NoiseSchedule

Denoiser = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]
# callback(i, t, x, x0_hat): called after step i (taken at timestep t) with the new x and x0_hat.
Callback = Callable[[int, int, torch.Tensor, torch.Tensor], None]


class Sampler(Protocol):
    def plan(self, T: int) -> list[tuple[int, int]]: ...

    def step(self, model_output, t, other_t, x, schedule, generator=None) -> tuple[torch.Tensor, torch.Tensor]: ...


def sample(
    denoiser: Denoiser,
    schedule: NoiseSchedule,
    x_T: torch.Tensor,
    sampler: Sampler | None = None,
    *,
    cond: Any = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Denoise ``x_T`` (B, ...) to a sample x_0 with ``sampler`` (default: 50-step DDIM, eta 0, reading the
    denoiser's ``prediction_type``; a given sampler must read the same one):
    DDPM's Algorithm 2 (Ho et al. 2020) or DDIM's eq. 12 (Song et al. 2021) applied level by level.

    ``generator`` drives the noise of stochastic samplers; with the same x_T and seed the result is
    the same. ``callback(i, t, x, x0_hat)`` sees every step, e.g. to record the trajectory.
    """
    sampler = sampler or DDIMSampler(prediction_type=prediction_type_of(denoiser))
    return _run(denoiser, schedule, x_T, sampler, cond, generator, callback, progress, "sample")


def invert(
    denoiser: Denoiser,
    schedule: NoiseSchedule,
    x_0: torch.Tensor,
    inverter: DDIMInverter | None = None,
    *,
    cond: Any = None,
    callback: Callback | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Encode ``x_0`` into the noise x_T that a ``DDIMSampler`` with the same settings maps back to it.

    DDIM inversion (Song et al., ICLR 2021, sec. 5.4): the eta = 0 ODE integrated from data to
    noise. The round trip x_0 -> x_T -> x_0 is exact only as the number of steps grows.
    """
    inverter = inverter or DDIMInverter(prediction_type=prediction_type_of(denoiser))
    return _run(denoiser, schedule, x_0, inverter, cond, None, callback, progress, "invert")


@torch.no_grad()
def _run(denoiser, schedule, x, sampler, cond, generator, callback, progress, desc) -> torch.Tensor:
    if not callable(denoiser):
        raise ValueError(f"denoiser must be callable as denoiser(x_t, t, cond), got {type(denoiser).__name__}")
    if not isinstance(schedule, NoiseSchedule):
        raise ValueError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
    if not (callable(getattr(sampler, "plan", None)) and callable(getattr(sampler, "step", None))):
        raise ValueError(f"sampler must have plan(T) and step(...), like DDIMSampler; got {type(sampler).__name__}")
    prediction_type_of(denoiser, getattr(sampler, "prediction_type", None), "sampler.prediction_type")
    check_tensor("x", x, ndim=range(2, 8))  # once (values on CPU only: no device sync); the steps do not check
    check_generator("generator", generator)
    for i, (t, other_t) in enumerate(tqdm(sampler.plan(schedule.T), desc=desc, disable=not progress)):
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        out = denoiser(x, t_batch, cond)
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"denoiser must return a tensor of x's shape {tuple(x.shape)}, got {got}")
        x, x0 = sampler.step(out, t, other_t, x, schedule, generator)
        if callback is not None:
            callback(i, t, x, x0)
    # once per call, after the last step (on an accelerator: one wait, where the caller reads the result anyway; the
    # meta device has no values): a denoiser that returned NaN or inf, or an fp16 network that overflowed, must not
    # pass for a result
    if x.device.type != "meta" and not bool(torch.isfinite(x).all()):
        raise ValueError(f"denoiser must return finite values: the {desc} result holds NaN or inf (check the model's "
                         "outputs, its dtype and the sampler's settings)")
    return x


@torch.no_grad()
def predict_x0(denoiser: Denoiser, schedule: NoiseSchedule, x_t: torch.Tensor, t, cond: Any = None) -> torch.Tensor:
    """The denoiser's one-shot estimate of the clean data, e.g. x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)
    for an eps-predicting one (Ho et al. 2020, eq. 15): what a sampler "aims at" from level t."""
    check_tensor("x_t", x_t, ndim=range(2, 8))
    t = check_timesteps("t", t, schedule.T, batch=x_t.shape[0]).expand(x_t.shape[0]).to(x_t.device)
    out = denoiser(x_t, t, cond)
    return x0_eps_from_output(out, x_t, schedule.abar(t, x_t), prediction_type_of(denoiser))[0]
