"""What the DDPM and DDIM steps and samplers share: argument checks, abar beyond t = 0, noise, settings.

The public step functions check their arguments (``check_step_args``) and call an unchecked core; the
samplers call the cores directly, their settings having been checked once at construction and the
tensors once by ``sample`` / ``invert`` (ARCHITECTURE.md, "Where inputs are checked").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._checks import check_choice, check_float, check_generator, check_int, check_same_shape, check_tensor
from .forward import PREDICTION_TYPES, randn
from .schedules import NoiseSchedule
from .spacing import SPACINGS, timesteps


def check_step_args(model_output, t, x_t, schedule, other_t, prediction_type, clip_sample, other_name="prev_t",
                    noise=None, generator=None):
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
    if noise is not None:
        check_tensor("noise", noise)
        check_same_shape("noise", noise, "model_output", model_output)
    check_generator("generator", generator)
    t = check_int("t", t, 0, schedule.T)
    return t, check_int(other_name, other_t, None, t)


def abar_at(schedule: NoiseSchedule, t: int, set_alpha_to_one: bool = True) -> torch.Tensor:
    """abar_t, or for t < 0 (the clean level beyond t = 0) 1.0, or abar_0 when ``set_alpha_to_one`` is
    False (diffusers' DDIM option)."""
    if t >= 0:
        return schedule.alphas_cumprod[t]
    return torch.tensor(1.0) if set_alpha_to_one else schedule.alphas_cumprod[0]


def step_noise(noise: torch.Tensor | None, model_output: torch.Tensor, generator) -> torch.Tensor:
    """The noise z of a stochastic step: ``noise`` if given, else a draw from ``generator``."""
    if noise is None:
        return randn(model_output.shape, generator, model_output.device, model_output.dtype)
    return noise


@dataclass(frozen=True)
class SamplerSettings:
    """The fields every sampler has: which timesteps it visits and how it reads the network's output.

    ``clip_sample`` clamps x0_hat to [-clip_sample, clip_sample] (off when None).
    """

    num_steps: int = 50
    spacing: str = "leading"
    offset: int = 0
    prediction_type: str = "epsilon"
    clip_sample: float | None = None

    def __post_init__(self):
        check_int("num_steps", self.num_steps, 1)
        check_choice("spacing", self.spacing, SPACINGS)
        check_int("offset", self.offset, 0)
        if self.offset and self.spacing != "leading":
            raise ValueError(f"offset applies to 'leading' spacing only, got offset={self.offset} "
                             f"with spacing={self.spacing!r}")
        check_choice("prediction_type", self.prediction_type, PREDICTION_TYPES)
        if self.clip_sample is not None:
            check_float("clip_sample", self.clip_sample, 0.0)

    def timesteps(self, T: int) -> list[int]:
        """The descending timesteps this sampler visits (see ``spacing.timesteps``)."""
        return timesteps(self.num_steps, T, self.spacing, self.offset).tolist()
