"""Read a diffusers scheduler's configuration as a coursekit schedule and sampler.

So that a student can take a diffusers pipeline (e.g. Stable Diffusion's DDIM configuration) and
run coursekit's samplers and editing methods with exactly the same numbers. Every config key the
scheduler's class takes is implemented or refused (dynamic thresholding, zero-terminal-SNR rescaling, learned
variances), never ignored; keys it does not take (another scheduler's) are ignored, as diffusers ignores them.
"""

from __future__ import annotations

import torch

from .._checks import check_config_keys, check_int, init_defaults
from .ddim import DDIMInverter, DDIMSampler
from .ddpm import DDPMSampler
from .schedules import NoiseSchedule, cosine, linear, scaled_linear, sigmoid

_BETAS = {"linear": linear, "scaled_linear": scaled_linear, "squaredcos_cap_v2": cosine, "sigmoid": sigmoid}
_SAMPLERS = {"DDIMScheduler": DDIMSampler, "DDPMScheduler": DDPMSampler, "DDIMInverseScheduler": DDIMInverter}
# Every key of the schedulers' configs is read (_MAPPED), has no effect once the refused options are off
# (_INERT: dynamic thresholding's parameters), or must hold the one value coursekit implements (_REQUIRED).
_MAPPED = {"num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "clip_sample",
           "clip_sample_range", "set_alpha_to_one", "steps_offset", "prediction_type", "timestep_spacing",
           "variance_type"}
_INERT = {"dynamic_thresholding_ratio", "sample_max_value"}
_REQUIRED = {"thresholding": False, "rescale_betas_zero_snr": False}


def schedule_from_diffusers(config) -> NoiseSchedule:
    """The ``NoiseSchedule`` of a diffusers scheduler config (``scheduler.config``)."""
    missing = [k for k in ("num_train_timesteps", "beta_schedule", "beta_start", "beta_end") if k not in config]
    if missing:
        raise ValueError(f"config must be a diffusers scheduler config; it lacks {missing}")
    T = config["num_train_timesteps"]
    if config.get("rescale_betas_zero_snr"):
        raise ValueError("config.rescale_betas_zero_snr=True is not supported by coursekit schedules")
    if config.get("trained_betas") is not None:
        betas = torch.tensor(config["trained_betas"], dtype=torch.float32)
        if betas.ndim != 1 or betas.shape[0] != T:
            raise ValueError(f"config.trained_betas must hold num_train_timesteps = {T} values, got {tuple(betas.shape)}")
        return NoiseSchedule(betas, "trained")
    name = config["beta_schedule"]
    if name not in _BETAS:
        raise ValueError(f"config.beta_schedule must be one of {list(_BETAS)}, got {name!r}")
    if name == "squaredcos_cap_v2":
        return cosine(T)
    return _BETAS[name](T, config["beta_start"], config["beta_end"])


def sampler_settings_from_diffusers(config, scheduler_class=None) -> dict:
    """The settings (spacing, offset, prediction type, clipping, and ``set_alpha_to_one`` or ``variance_type``) of
    coursekit's sampler equivalent to a diffusers ``scheduler_class`` (default ``DDIMScheduler``) made from ``config``.

    ``config`` may be another scheduler's, as a model's folder ships it (Stable Diffusion 1.5's is a
    ``PNDMScheduler``'s): as in diffusers' ``from_config``, keys the class does not take (``skip_prk_steps``) are
    ignored and those it takes but the config lacks hold the class's defaults (no ``timestep_spacing``: leading; no
    ``prediction_type``: epsilon). Every key the class takes is implemented or refused (``check_config_keys``).
    """
    import inspect

    if scheduler_class is None:
        from diffusers import DDIMScheduler as scheduler_class
    kind = scheduler_class.__name__
    if kind not in _SAMPLERS:
        raise ValueError(f"scheduler_class must be one of {list(_SAMPLERS)}, got {kind}")
    taken = set(inspect.signature(scheduler_class.__init__).parameters) - {"self"}
    defaults = init_defaults(scheduler_class)
    config = {**defaults, **{k: v for k, v in dict(config).items() if k in taken}}
    check_config_keys(config, "coursekit's samplers", mapped=_MAPPED, required=_REQUIRED, inert=_INERT,
                      defaults=defaults)
    spacing = config["timestep_spacing"]
    settings = dict(
        spacing=spacing,
        # diffusers applies steps_offset to leading spacing only
        offset=config["steps_offset"] if spacing == "leading" else 0,
        prediction_type=config["prediction_type"],
        clip_sample=config["clip_sample_range"] if config["clip_sample"] else None,
    )
    if kind == "DDPMScheduler":
        if config["variance_type"] not in ("fixed_small", "fixed_large"):
            raise ValueError(f"config.variance_type must be fixed_small or fixed_large, got {config['variance_type']!r}")
        settings["variance_type"] = config["variance_type"]
    else:
        settings["set_alpha_to_one"] = config["set_alpha_to_one"]
    return settings


def from_diffusers(scheduler, num_inference_steps: int | None = None, eta: float = 0.0):
    """(schedule, sampler) equivalent to a diffusers ``DDIMScheduler``, ``DDPMScheduler`` or
    ``DDIMInverseScheduler``. ``num_inference_steps`` defaults to the one set on the scheduler;
    ``eta`` is what a diffusers pipeline passes to ``DDIMScheduler.step`` (DDIM only). Config keys the
    scheduler's class does not take (another scheduler's, kept by diffusers' ``from_config``) are ignored, as
    diffusers ignores them (``sampler_settings_from_diffusers``)."""
    kind = type(scheduler).__name__
    if kind not in _SAMPLERS:
        raise ValueError(f"scheduler must be one of {list(_SAMPLERS)}, got {kind}")
    settings = sampler_settings_from_diffusers(scheduler.config, type(scheduler))
    steps = num_inference_steps if num_inference_steps is not None else scheduler.num_inference_steps
    if steps is None:
        raise ValueError("num_inference_steps must be given, or set on the scheduler with set_timesteps")
    check_int("num_inference_steps", steps, 1)
    if kind == "DDIMScheduler":
        settings["eta"] = eta
    elif eta != 0:
        raise ValueError(f"eta applies to DDIMScheduler only, got eta={eta} for {kind}")
    return schedule_from_diffusers(scheduler.config), _SAMPLERS[kind](num_steps=steps, **settings)
