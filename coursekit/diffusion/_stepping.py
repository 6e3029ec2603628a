"""Argument checks and noise draws shared by the DDPM and DDIM steps."""

from __future__ import annotations

import torch

from .._checks import check_choice, check_float, check_int, check_same_shape, check_tensor
from .forward import PREDICTION_TYPES, randn
from .spacing import SPACINGS


def check_step_args(model_output, t, x_t, schedule, other_t, prediction_type, clip_sample, other_name="prev_t"):
    """Checks shared by the DDPM and DDIM steps; returns (t, other_t) as ints.

    ``other_t`` is the level the step goes to (or comes from), below t; any negative value means
    the clean level beyond t = 0 (diffusers' fixed stride can overshoot 0, e.g. 0 - 142).
    """
    check_tensor("x_t", x_t)
    check_tensor("model_output", model_output)
    check_same_shape("model_output", model_output, "x_t", x_t)
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    if clip_sample is not None:
        check_float("clip_sample", clip_sample, 0.0)
    t = check_int("t", t, 0, schedule.T)
    return t, check_int(other_name, other_t, None, t)


def step_noise(noise: torch.Tensor | None, model_output: torch.Tensor, generator) -> torch.Tensor:
    if noise is None:
        return randn(model_output.shape, generator, model_output.device, model_output.dtype)
    check_tensor("noise", noise)
    check_same_shape("noise", noise, "model_output", model_output)
    return noise


def check_sampler_fields(sampler) -> None:
    """Checks of the fields every sampler dataclass has."""
    check_int("num_steps", sampler.num_steps, 1)
    check_choice("spacing", sampler.spacing, SPACINGS)
    check_int("offset", sampler.offset, 0)
    check_choice("prediction_type", sampler.prediction_type, PREDICTION_TYPES)
    if sampler.clip_sample is not None:
        check_float("clip_sample", sampler.clip_sample, 0.0)
