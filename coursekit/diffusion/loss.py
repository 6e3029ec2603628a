"""The training objective: predict the noise that was added (DDPM's simplified loss)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .._checks import check_choice, check_generator, check_int, check_tensor
from .forward import q_sample, randn, v_from_x0_eps
from .schedules import NoiseSchedule


def diffusion_loss(
    denoiser,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    cond: Any = None,
    *,
    generator: torch.Generator | None = None,
    t_range: tuple[int, int] | None = None,
    prediction_type: str = "epsilon",
) -> torch.Tensor:
    """L_simple = E_{t, eps} || eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t) ||^2.

    Ho et al., NeurIPS 2020, eq. 14 (Algorithm 1): t uniform on [0, T), or on ``t_range`` = [low, high)
    (how eDiff-I fine-tunes an expert on its interval). t and eps come from ``generator``.
    ``prediction_type="v_prediction"`` regresses v = sqrt(abar) eps - sqrt(1 - abar) x0 instead
    (Salimans & Ho, ICLR 2022, sec. 4): in x0 terms its weight is 1 + SNR rather than SNR, so the
    noisiest levels, where only the condition tells what the image will be, still teach the model.
    """
    check_tensor("x0", x0, ndim=range(2, 8))
    check_generator("generator", generator)
    low, high = t_range if t_range is not None else (0, schedule.T)
    check_int("t_range[0]", low, 0, schedule.T)
    check_int("t_range[1]", high, low + 1, schedule.T + 1)
    device = generator.device if generator is not None else x0.device
    t = torch.randint(low, high, (x0.shape[0],), generator=generator, device=device).to(x0.device)
    noise = randn(x0.shape, generator, x0.device, x0.dtype)
    check_choice("prediction_type", prediction_type, ("epsilon", "v_prediction"))
    target = noise if prediction_type == "epsilon" else v_from_x0_eps(x0, noise, schedule.abar(t, x0))
    return F.mse_loss(denoiser(q_sample(x0, t, noise, schedule), t, cond), target)
