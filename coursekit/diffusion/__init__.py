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
from .guidance import ILVR, ClassifierFreeGuidance, PixelGuidance, UniversalGuidance, low_pass
from .interop import from_diffusers, sampler_settings_from_diffusers, schedule_from_diffusers
from .loss import diffusion_loss, multiscale_loss, unidiffuser_loss
from .sampling import Denoiser, invert, predict_x0, sample
from .schedules import (
    SCHEDULES,
    NoiseSchedule,
    cosine,
    interpolated_cosine,
    linear,
    logsnr_cosine,
    logsnr_interpolated_cosine,
    logsnr_shifted_cosine,
    make_schedule,
    scaled_linear,
    shift_snr,
    shifted_cosine,
    sigmoid,
)
from .spacing import SPACINGS, timesteps

__all__ = [
    "ClassifierFreeGuidance", "cosine", "ddim_inverse_step", "ddim_step", "DDIMInverter", "DDIMSampler",
    "ddpm_step", "DDPMSampler", "Denoiser", "diffusion_loss", "eps_from_x0", "from_diffusers", "ILVR",
    "interpolated_cosine", "invert", "linear", "logsnr_cosine", "logsnr_interpolated_cosine", "logsnr_shifted_cosine",
    "low_pass", "make_schedule", "multiscale_loss", "NoiseSchedule",
    "output_from_x0_eps", "PixelGuidance", "predict_x0", "prediction_type_of", "PREDICTION_TYPES", "q_sample",
    "sample", "sampler_settings_from_diffusers", "scaled_linear", "schedule_from_diffusers", "SCHEDULES", "shift_snr",
    "shifted_cosine", "sigmoid", "SPACINGS",
    "timesteps", "unidiffuser_loss", "UniversalGuidance", "v_from_x0_eps", "x0_eps_from_output", "x0_from_eps"
]
