"""The diffusion core: schedules, the forward process, DDPM / DDIM steps, sampling loops, guidance."""

from .ddim import DDIMInverter, DDIMSampler, ddim_inverse_step, ddim_step
from .ddpm import DDPMSampler, ddpm_step
from .forward import (
    PREDICTION_TYPES,
    eps_from_x0,
    output_from_x0_eps,
    prediction_type_of,
    q_sample,
    v_from_x0_eps,
    x0_eps_from_output,
    x0_from_eps,
)
from .guidance import ILVR, ClassifierFreeGuidance, PixelGuidance, low_pass
from .interop import from_diffusers, schedule_from_diffusers
from .loss import diffusion_loss
from .sampling import Denoiser, invert, predict_x0, sample
from .schedules import (
    SCHEDULES,
    NoiseSchedule,
    cosine,
    linear,
    logsnr_cosine,
    logsnr_shifted_cosine,
    make_schedule,
    scaled_linear,
    shifted_cosine,
    sigmoid,
)
from .spacing import SPACINGS, timesteps

__all__ = [
    "ILVR", "ClassifierFreeGuidance", "DDIMInverter", "DDIMSampler", "DDPMSampler", "Denoiser", "NoiseSchedule",
    "PixelGuidance",
    "PREDICTION_TYPES", "SCHEDULES", "SPACINGS", "cosine", "ddim_inverse_step", "ddim_step", "ddpm_step", "diffusion_loss",
    "eps_from_x0", "from_diffusers", "output_from_x0_eps", "prediction_type_of", "invert", "linear", "logsnr_cosine", "logsnr_shifted_cosine", "low_pass", "make_schedule", "predict_x0", "q_sample",
    "sample", "scaled_linear", "schedule_from_diffusers", "shifted_cosine", "sigmoid", "timesteps", "v_from_x0_eps", "x0_eps_from_output",
    "x0_from_eps",
]
