"""The training objective: regress what the network predicts (the noise, x_0 or v) at a random noise level."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .._checks import check_choice, check_generator, check_int, check_tensor
from .forward import output_from_x0_eps, prediction_type_of, q_sample, randn
from .schedules import NoiseSchedule


def diffusion_loss(
    denoiser,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    cond: Any = None,
    *,
    generator: torch.Generator | None = None,
    t_range: tuple[int, int] | None = None,
    prediction_type: str | None = None,
    multiscale_base: int | None = None,
) -> torch.Tensor:
    """L_simple = E_{t, eps} || eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t) ||^2.

    Ho et al., NeurIPS 2020, eq. 14 (Algorithm 1): t uniform on [0, T), or on ``t_range`` = [low, high)
    (how eDiff-I fine-tunes an expert on its interval). t and eps come from ``generator``.
    The target follows the denoiser's ``prediction_type`` (``prediction_type_of``; ``prediction_type``
    states it for a denoiser that declares none): eps as above, x0 ("sample"), or
    v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho, ICLR 2022, sec. 4): in x0 terms v's weight
    is 1 + SNR rather than SNR, so the noisiest levels, where only the condition tells what the image
    will be, still teach the model. ``multiscale_base`` replaces the plain MSE by ``multiscale_loss`` from that
    resolution up ("simple diffusion").
    """
    check_tensor("x0", x0, ndim=range(2, 8))
    prediction_type = prediction_type_of(denoiser, prediction_type)
    check_generator("generator", generator)
    low, high = t_range if t_range is not None else (0, schedule.T)
    check_int("t_range[0]", low, 0, schedule.T)
    check_int("t_range[1]", high, low + 1, schedule.T + 1)
    device = generator.device if generator is not None else x0.device
    t = torch.randint(low, high, (x0.shape[0],), generator=generator, device=device).to(x0.device)
    noise = randn(x0.shape, generator, x0.device, x0.dtype)
    target = output_from_x0_eps(x0, noise, schedule.abar(t, x0), prediction_type)
    prediction = denoiser(q_sample(x0, t, noise, schedule), t, cond)
    if multiscale_base is not None:
        return multiscale_loss(prediction, target, multiscale_base)
    return F.mse_loss(prediction, target)


def multiscale_loss(prediction: torch.Tensor, target: torch.Tensor, base: int = 32) -> torch.Tensor:
    """"simple diffusion" (Hoogeboom, Heek & Salimans, ICML 2023, sec. 3.2): sum over s = base, 2 base, ..., d of
    (1 / s) L^{s x s}, where L^{s x s} is the mean squared error after averaging both tensors to s x s.

    A d x d image's plain MSE is dominated by its many high-frequency pixels; each pooled term sees only what
    survives averaging, so an error in the coarse layout (a wrong colour over a whole object) is charged at every
    scale while pixel-level error only at full resolution. (B, C, d, d) tensors; d / base a power of 2.
    """
    check_tensor("prediction", prediction, ndim=4)
    check_tensor("target", target, shape=tuple(prediction.shape))
    check_int("base", base, 1)
    d = prediction.shape[-1]
    if prediction.shape[-2] != d or d % base or (d // base) & (d // base - 1):
        raise ValueError(f"prediction must be square with a side of base times a power of 2 (base {base}), "
                         f"got {tuple(prediction.shape[-2:])}")
    total, s = prediction.new_zeros(()), d
    while s >= base:
        k = d // s
        total = total + F.mse_loss(F.avg_pool2d(prediction, k), F.avg_pool2d(target, k)) / s
        s //= 2
    return total


def unidiffuser_loss(network, schedule: NoiseSchedule, x0: torch.Tensor, y0: torch.Tensor, *,
                     generator: torch.Generator | None = None, clean: str | None = None,
                     modality_mean: bool = False) -> torch.Tensor:
    """UniDiffuser's objective (Bao et al., ICML 2023, eq. 5):
    E || eps_theta(x_{t_x}, y_{t_y}, t_x, t_y) - [eps_x, eps_y] ||^2 with t_x, t_y independent and uniform on [0, T).

    One network learns the noise of both modalities at every pair of levels, so every distribution of the pair is a
    choice of timesteps (``models.unidiffuser``). ``network(x_t, y_t, t_x, t_y) -> (eps_x, eps_y)``; x0 (B, ...) and
    y0 (B, ...) one pair per row. The mean is over all B (|x| + |y|) numbers; ``modality_mean`` instead sums each
    modality's own mean, so both weigh the same whatever their sizes (an image of 3,072 numbers beside a caption
    vector of 10 leaves the caption 0.3% of the plain mean's weight). t and noise come from ``generator``.
    ``clean`` "x" trains the same network as a bespoke image-to-text model instead: x always clean at t_x = 0 (as the
    image-to-text task feeds it), the loss on eps_y alone; "y" the reverse (text-to-image). The same draws are made.
    """
    check_choice("clean", clean, (None, "x", "y"))
    check_tensor("x0", x0, ndim=range(2, 8))
    check_tensor("y0", y0, ndim=range(2, 8))
    if y0.shape[0] != x0.shape[0]:
        raise ValueError(f"y0 must hold one row per row of x0 ({x0.shape[0]}), got {y0.shape[0]}")
    check_generator("generator", generator)
    B, device = x0.shape[0], generator.device if generator is not None else x0.device
    t_x = torch.randint(0, schedule.T, (B,), generator=generator, device=device).to(x0.device)
    t_y = torch.randint(0, schedule.T, (B,), generator=generator, device=device).to(x0.device)
    eps_x = randn(x0.shape, generator, x0.device, x0.dtype)
    eps_y = randn(y0.shape, generator, y0.device, y0.dtype)
    if clean == "x":
        out_y = network(x0, q_sample(y0, t_y, eps_y, schedule), torch.zeros_like(t_x), t_y)[1]
        return F.mse_loss(out_y, eps_y)
    if clean == "y":
        out_x = network(q_sample(x0, t_x, eps_x, schedule), y0, t_x, torch.zeros_like(t_y))[0]
        return F.mse_loss(out_x, eps_x)
    out_x, out_y = network(q_sample(x0, t_x, eps_x, schedule), q_sample(y0, t_y, eps_y, schedule), t_x, t_y)
    if modality_mean:
        return F.mse_loss(out_x, eps_x) + F.mse_loss(out_y, eps_y)
    out, eps = (torch.cat([a.flatten(1), b.flatten(1)], 1) for a, b in ((out_x, out_y), (eps_x, eps_y)))
    return F.mse_loss(out, eps)
