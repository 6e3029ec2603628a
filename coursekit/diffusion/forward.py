"""The forward (noising) process and the three parameterisations of a denoiser's output.

With abar = alpha-bar_t, the forward process is x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps
(Ho et al., NeurIPS 2020, eq. 4). A network may predict eps (Ho et al.), x_0 ("sample") or the
velocity v = sqrt(abar) eps - sqrt(1 - abar) x_0 (Salimans & Ho, "Progressive distillation",
ICLR 2022, sec. 4). Any one of them and x_t determine the other two.

``abar`` may be a 0-d tensor or a tensor that broadcasts against x (e.g. (B, 1, 1, 1)). The
expressions are written in the order diffusers evaluates them so results agree bit for bit.
"""

from __future__ import annotations

import torch

from .._checks import check_choice, check_generator, check_same_shape, check_tensor, check_timesteps
from .schedules import NoiseSchedule

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


def q_sample(x0: torch.Tensor, t, noise: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """Sample x_t ~ q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) with the given ``noise``.

    Ho et al. 2020, eq. 4. ``t``: an int or (B,) long tensor in [0, T). Equals diffusers'
    ``scheduler.add_noise(x0, noise, t)``.
    """
    check_tensor("x0", x0, ndim=range(1, 8))
    check_tensor("noise", noise)
    check_same_shape("noise", noise, "x0", x0)
    t = check_timesteps("t", t, schedule.T, batch=x0.shape[0])
    abar = schedule.abar(t.reshape(-1), x0)
    return abar**0.5 * x0 + (1 - abar) ** 0.5 * noise


def _check_pair(name: str, x: torch.Tensor, other_name: str, other: torch.Tensor, abar: torch.Tensor) -> None:
    check_tensor(name, x, finite=False)
    check_tensor(other_name, other, finite=False)
    check_same_shape(other_name, other, name, x)
    if isinstance(abar, bool) or not isinstance(abar, (torch.Tensor, float, int)):
        raise ValueError(f"abar must be a number or a tensor that broadcasts against {name}, got {type(abar).__name__}")


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """x_0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)  (Ho et al. 2020, eq. 4 solved for x_0;
    DDIM, Song et al. ICLR 2021, eq. 12 "predicted x_0")."""
    _check_pair("x_t", x_t, "eps", eps, abar)
    return (x_t - (1 - abar) ** 0.5 * eps) / abar**0.5


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """eps = (x_t - sqrt(abar) x_0) / sqrt(1 - abar)  (Ho et al. 2020, eq. 4 solved for eps)."""
    _check_pair("x_t", x_t, "x0", x0, abar)
    return (x_t - abar**0.5 * x0) / (1 - abar) ** 0.5


def v_from_x0_eps(x0: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """v = sqrt(abar) eps - sqrt(1 - abar) x_0 (Salimans & Ho 2022, sec. 4)."""
    _check_pair("x0", x0, "eps", eps, abar)
    return abar**0.5 * eps - (1 - abar) ** 0.5 * x0


def x0_eps_from_output(
    model_output: torch.Tensor, x_t: torch.Tensor, abar: torch.Tensor, prediction_type: str = "epsilon"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn a network's output into (x_0, eps) predictions, for any of ``PREDICTION_TYPES``.

    For v (Salimans & Ho 2022, sec. 4 and appendix D): x_0 = sqrt(abar) x_t - sqrt(1 - abar) v and
    eps = sqrt(abar) v + sqrt(1 - abar) x_t.
    """
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    _check_pair("x_t", x_t, "model_output", model_output, abar)
    if prediction_type == "epsilon":
        return x0_from_eps(x_t, model_output, abar), model_output
    if prediction_type == "sample":
        return model_output, eps_from_x0(x_t, model_output, abar)
    x0 = abar**0.5 * x_t - (1 - abar) ** 0.5 * model_output
    eps = abar**0.5 * model_output + (1 - abar) ** 0.5 * x_t
    return x0, eps


def output_from_x0_eps(x0: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """What a network of ``prediction_type`` outputs for the prediction (x_0, eps): the inverse of
    ``x0_eps_from_output``, and the regression target of ``diffusion_loss`` for the true (x_0, eps)."""
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    if prediction_type == "epsilon":
        return eps
    if prediction_type == "sample":
        return x0
    return v_from_x0_eps(x0, eps, abar)


def prediction_type_of(denoiser, given: str | None = None, name: str = "prediction_type") -> str:
    """The parameterisation of ``denoiser``'s output: its ``prediction_type`` attribute, "epsilon" when it
    has none (ARCHITECTURE.md, "The one protocol"). ``given`` (named ``name``), when not None, must agree
    with a declared one; it is what counts for a denoiser that declares nothing."""
    declared = getattr(denoiser, "prediction_type", None)
    if declared is not None:
        check_choice(f"{type(denoiser).__name__}.prediction_type", declared, PREDICTION_TYPES)
    if given is None:
        return declared or "epsilon"
    check_choice(name, given, PREDICTION_TYPES)
    if declared is not None and declared != given:
        raise ValueError(f"{name} is {given!r}, but the denoiser ({type(denoiser).__name__}) predicts {declared!r}")
    return given


def randn(shape, generator: torch.Generator | None, device, dtype) -> torch.Tensor:
    """Standard normal noise drawn on the generator's device, then moved to ``device``.

    The same draw as diffusers' ``randn_tensor`` for a single generator, so that a sampler seeded
    like a diffusers pipeline produces the same images.
    """
    check_generator("generator", generator)
    rand_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=rand_device, dtype=dtype).to(device)
