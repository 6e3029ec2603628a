"""Discrete noise schedules: beta_t for t = 0..T-1 and alpha-bar_t = prod_{s<=t} (1 - beta_s).

The forward process is q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) (Ho et al., NeurIPS 2020,
eq. 4). Schedules are built in float32 torch exactly as diffusers builds them, so that the samplers
can match diffusers' schedulers bit for bit (a float64 schedule drifts by ~1e-6 over 50 DDIM steps).
"""

from __future__ import annotations

import math

import torch

from .._checks import check_choice, check_float, check_int, check_tensor, check_timesteps


class NoiseSchedule:
    """A variance-preserving schedule: ``betas`` (T,) float32 and ``alphas_cumprod`` (T,) float32.

    ``alphas_cumprod`` is ``torch.cumprod(1 - betas)`` in float32, as in diffusers. Index both with
    integer timesteps in ``[0, T)``; t = 0 is the least noisy level.
    """

    def __init__(self, betas: torch.Tensor, name: str = "custom"):
        check_tensor("betas", betas, ndim=1)
        if betas.dtype != torch.float32:
            raise ValueError(f"betas must be float32 (the dtype diffusers uses), got {betas.dtype}")
        if betas.shape[0] < 2:
            raise ValueError(f"betas must hold at least 2 timesteps, got {betas.shape[0]}")
        if bool((betas <= 0).any()) or bool((betas > 1).any()):
            raise ValueError("betas must lie in (0, 1]")
        self.name = name
        self.betas = betas.detach().cpu()
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)
        self._abar_on: dict[tuple, torch.Tensor] = {}  # alphas_cumprod per (device, dtype), copied once

    @property
    def T(self) -> int:
        """The number of training timesteps."""
        return self.betas.shape[0]

    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio abar_t / (1 - abar_t), shape (T,)."""
        return self.alphas_cumprod / (1 - self.alphas_cumprod)

    def abar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """alpha-bar at timesteps ``t`` (B,), shaped (B, 1, ..., 1) to broadcast against ``like``."""
        t = check_timesteps("t", t, self.T)
        key = (like.device, like.dtype)
        if key not in self._abar_on:  # a copy to an accelerator waits for it: once, not at every step
            self._abar_on[key] = self.alphas_cumprod.to(device=like.device, dtype=like.dtype)
        a = self._abar_on[key][t.to(like.device)]
        return a.reshape(-1, *([1] * (like.ndim - 1)))

    def __repr__(self) -> str:
        return f"NoiseSchedule({self.name}, T={self.T})"


def linear(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
    """Betas linear in t (Ho et al. 2020, sec. 4: 1e-4 to 0.02 over T = 1000)."""
    _check_range(T, beta_start, beta_end)
    return NoiseSchedule(torch.linspace(beta_start, beta_end, T, dtype=torch.float32), "linear")


def scaled_linear(T: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> NoiseSchedule:
    """sqrt(beta) linear in t, the Stable Diffusion schedule (Rombach et al., CVPR 2022)."""
    _check_range(T, beta_start, beta_end)
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float32) ** 2
    return NoiseSchedule(betas, "scaled_linear")


def sigmoid(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
    """Betas on a sigmoid ramp over [-6, 6] from beta_start to beta_end: diffusers' DDPM "sigmoid"
    schedule, a heuristic without a paper equation, kept so every diffusers schedule has a twin."""
    _check_range(T, beta_start, beta_end)
    betas = torch.sigmoid(torch.linspace(-6, 6, T)) * (beta_end - beta_start) + beta_start
    return NoiseSchedule(betas, "sigmoid")


def cosine(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
    """The cosine schedule abar(u) = cos^2((u + s) / (1 + s) * pi / 2), u = t / T.

    Nichol & Dhariwal, "Improved DDPM", ICML 2021, eq. 17; betas clipped at ``max_beta`` (their
    0.999). Computed in Python floats and cast to float32, like diffusers' "squaredcos_cap_v2".
    """
    check_int("T", T, 2)
    check_float("s", s, 0.0)
    check_float("max_beta", max_beta, 0.0, 1.0)

    def abar(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1 - abar((i + 1) / T) / abar(i / T), max_beta) for i in range(T)]
    return NoiseSchedule(torch.tensor(betas, dtype=torch.float32), "cosine")


def logsnr_cosine(u: torch.Tensor, logsnr_min: float = -15.0, logsnr_max: float = 15.0) -> torch.Tensor:
    """log SNR of the cosine schedule, -2 log tan(pi u / 2), with u in [0, 1] rescaled so the
    log SNR spans [logsnr_min, logsnr_max] (Hoogeboom, Heek & Salimans, "simple diffusion",
    ICML 2023, sec. 3.1)."""
    t_min = math.atan(math.exp(-0.5 * logsnr_max))
    t_max = math.atan(math.exp(-0.5 * logsnr_min))
    return -2 * torch.log(torch.tan(t_min + u * (t_max - t_min)))


def logsnr_shifted_cosine(u: torch.Tensor, resolution: int, base_resolution: int = 64, **kw) -> torch.Tensor:
    """The resolution-shifted cosine log SNR: logSNR_cos(u) + 2 log(base / resolution).

    "simple diffusion", sec. 3.1: at resolution d the SNR of the base-resolution schedule is divided
    by (d / base)^2, so that a d x d image averaged to base x base sees the base schedule's SNR.
    """
    check_int("resolution", resolution, 1)
    check_int("base_resolution", base_resolution, 1)
    return logsnr_cosine(u, **kw) + 2 * math.log(base_resolution / resolution)


def shifted_cosine(T: int = 1000, resolution: int = 64, base_resolution: int = 64) -> NoiseSchedule:
    """Discretise the shifted cosine schedule: abar_t = sigmoid(logSNR((t + 1) / T)), t = 0..T-1.

    With ``resolution == base_resolution`` it is the plain cosine schedule in log-SNR form; a larger
    resolution shifts every level towards more noise ("simple diffusion", Hoogeboom et al. 2023).
    """
    check_int("T", T, 2)
    u = torch.arange(1, T + 1, dtype=torch.float64) / T
    return _from_abar(torch.sigmoid(logsnr_shifted_cosine(u, resolution, base_resolution)),
                      f"shifted_cosine({resolution}/{base_resolution})")


def _from_abar(abar: torch.Tensor, name: str) -> NoiseSchedule:
    """The schedule whose alphas_cumprod is ``abar`` (T,) float64: beta_t = 1 - abar_t / abar_{t-1}."""
    prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    return NoiseSchedule((1 - abar / prev).to(torch.float32), name)


def shift_snr(schedule: NoiseSchedule, resolution: int, base_resolution: int) -> NoiseSchedule:
    """Any schedule made for ``base_resolution`` images, shifted for ``resolution`` ("simple diffusion",
    Hoogeboom, Heek & Salimans, ICML 2023, eq. 5): SNR_d(t) = SNR_base(t) * (base / d)^2, that is
    log SNR + 2 log(base / d) at every t.

    Why (their eq. 4): averaging s x s blocks of a d x d image keeps its low frequencies and divides the
    noise variance by s^2, so at the same t a 128-px image holds what a 32-px one holds at 16 times the SNR.
    The shifted schedule gives the d-px image, pooled to base size, the base schedule's SNR.
    """
    if not isinstance(schedule, NoiseSchedule):
        raise ValueError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
    check_int("resolution", resolution, 1)
    check_int("base_resolution", base_resolution, 1)
    abar = schedule.alphas_cumprod.double()
    logsnr = torch.log(abar) - torch.log1p(-abar) + 2 * math.log(base_resolution / resolution)
    return _from_abar(torch.sigmoid(logsnr), f"{schedule.name} shifted {base_resolution}->{resolution}")


def logsnr_interpolated_cosine(u: torch.Tensor, resolution: int, low: int = 32, high: int = 256,
                               **kw) -> torch.Tensor:
    """"simple diffusion", eq. 6, for very high resolutions: the cosine log SNR shifted as if for ``low``-px noise
    at the noisiest end and for ``high``-px noise at the clean end, interpolated linearly in u:
    u * logSNR_shift(low) + (1 - u) * logSNR_shift(high), with logSNR_shift(n) = logSNR_cos(u) + 2 log(n / d)
    (the paper's 512-px models: low 32, high 256). The global layout, decided at high noise, gets the large
    shift; the detail, decided late, a small one."""
    check_int("low", low, 1)
    check_int("high", high, low)
    check_tensor("u", u, ndim=range(0, 8))
    return (u * logsnr_shifted_cosine(u, resolution, low, **kw)
            + (1 - u) * logsnr_shifted_cosine(u, resolution, high, **kw))


def interpolated_cosine(T: int = 1000, resolution: int = 512, low: int = 32, high: int = 256) -> NoiseSchedule:
    """Discretise ``logsnr_interpolated_cosine`` as ``shifted_cosine`` does: abar_t = sigmoid(logSNR((t + 1) / T))."""
    check_int("T", T, 2)
    u = torch.arange(1, T + 1, dtype=torch.float64) / T
    return _from_abar(torch.sigmoid(logsnr_interpolated_cosine(u, resolution, low, high)),
                      f"interpolated_cosine({resolution}: {low}..{high})")


SCHEDULES = {
    "linear": linear,
    "scaled_linear": scaled_linear,
    "sigmoid": sigmoid,
    "cosine": cosine,
    "shifted_cosine": shifted_cosine,
}


def make_schedule(name: str, T: int = 1000, **kwargs) -> NoiseSchedule:
    """Build a schedule by name: one of ``SCHEDULES``."""
    check_choice("name", name, SCHEDULES)
    return SCHEDULES[name](T, **kwargs)


def _check_range(T: int, beta_start: float, beta_end: float) -> None:
    check_int("T", T, 2)
    check_float("beta_start", beta_start, 0.0, 1.0)
    check_float("beta_end", beta_end, beta_start, 1.0)
    if beta_start == 0:
        raise ValueError("beta_start must be > 0")
