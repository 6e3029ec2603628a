"""Classifier-free guidance as a wrapper that turns a conditional denoiser into a guided one."""

from __future__ import annotations

from typing import Any

import torch

from .._checks import check_float, check_int, check_tensor
from .forward import output_from_x0_eps, prediction_type_of, q_sample, randn, x0_eps_from_output, x0_from_eps
from .sampling import Denoiser


class ClassifierFreeGuidance:
    """eps~ = eps(x_t, t, uncond) + scale * (eps(x_t, t, cond) - eps(x_t, t, uncond)).

    Ho & Salimans, "Classifier-Free Diffusion Guidance", 2022, eq. 6, written with diffusers'
    ``guidance_scale`` s = 1 + w: scale 1 is the conditional model, 0 the unconditional one, and
    s > 1 pushes samples towards what distinguishes ``cond`` from ``uncond``. The result meets the
    denoiser protocol, so every sampler and editing method accepts it; the combination is linear, so it
    holds for v or x_0 outputs as for eps, and the wrapper keeps the denoiser's ``prediction_type``.
    ``scale`` may be changed between calls (e.g. by a widget; it is checked when set). A tensor
    ``uncond`` with batch 1 stands for every sample; when ``cond`` and ``uncond`` are tensors of one
    shape, both predictions come from one batched call.
    """

    def __init__(self, denoiser: Denoiser, scale: float, uncond: Any = None):
        if not callable(denoiser):
            raise ValueError(f"denoiser must be callable, got {type(denoiser).__name__}")
        self.denoiser = denoiser
        self.scale = scale
        self.uncond = uncond

    @property
    def scale(self) -> float:
        return self._scale

    @scale.setter
    def scale(self, value: float) -> None:
        self._scale = check_float("scale", value)

    @property
    def prediction_type(self) -> str:
        return prediction_type_of(self.denoiser)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        scale = self._scale
        if scale == 1:
            return self.denoiser(x_t, t, cond)
        uncond = self.uncond
        if isinstance(uncond, torch.Tensor) and uncond.shape[0] == 1 and x_t.shape[0] > 1:
            uncond = uncond.expand(x_t.shape[0], *uncond.shape[1:])
        if scale == 0:
            return self.denoiser(x_t, t, uncond)
        if isinstance(uncond, torch.Tensor) and isinstance(cond, torch.Tensor) and uncond.shape == cond.shape:
            both = self.denoiser(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([uncond, cond]))
            eps_uncond, eps_cond = both.chunk(2)
        else:
            eps_uncond, eps_cond = self.denoiser(x_t, t, uncond), self.denoiser(x_t, t, cond)
        return eps_uncond + scale * (eps_cond - eps_uncond)  # (or the same with v or x_0)

    def __repr__(self) -> str:
        return f"ClassifierFreeGuidance(scale={self.scale}, uncond={self.uncond!r}, denoiser={self.denoiser!r})"


def low_pass(x: torch.Tensor, factor: int) -> torch.Tensor:
    """phi_N of ILVR: average-pool by ``factor`` then upsample back (nearest), keeping only coarse structure."""
    return torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(x, factor), scale_factor=factor,
                                           mode="nearest")


class PixelGuidance:
    """Steer sampling towards a coarse colour layout: eps' = eps - scale * sqrt(1 - abar_t) * grad log p(layout | x_t).

    With log p(layout | x_t) ~ -||pool(x0_hat(x_t)) - layout||^2 / 2, the gradient flows through the
    denoiser's clean-image estimate, as in reconstruction / universal guidance (Ho et al., "Video
    Diffusion Models", 2022, eq. 7; Bansal et al., "Universal Guidance", 2023) and classifier
    guidance's eps form (Dhariwal & Nichol 2021, eq. 14). ``layout``: (B, C, H/f, W/f) in [-1, 1].
    The guided eps' and the x0' it implies are returned in the denoiser's own ``prediction_type``.
    """

    def __init__(self, denoiser: Denoiser, schedule, layout: torch.Tensor, scale: float, factor: int):
        if not callable(denoiser):
            raise ValueError(f"denoiser must be callable, got {type(denoiser).__name__}")
        self.denoiser, self.schedule = denoiser, schedule
        self.layout = check_tensor("layout", layout, ndim=4)
        self.scale = check_float("scale", scale, 0.0)
        self.factor = check_int("factor", factor, 1)

    @property
    def prediction_type(self) -> str:
        return prediction_type_of(self.denoiser)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        if x_t.shape[-1] != self.layout.shape[-1] * self.factor or x_t.shape[0] != self.layout.shape[0]:
            raise ValueError(f"layout must have shape (B, C, H/{self.factor}, W/{self.factor}) for x_t "
                             f"{tuple(x_t.shape)}, got {tuple(self.layout.shape)}")
        abar, prediction_type = self.schedule.abar(t, x_t), self.prediction_type
        with torch.enable_grad():
            x = x_t.detach().requires_grad_(True)
            x0, eps = x0_eps_from_output(self.denoiser(x, t, cond), x, abar, prediction_type)
            log_p = -0.5 * ((torch.nn.functional.avg_pool2d(x0, self.factor) - self.layout) ** 2).sum()
            (grad,) = torch.autograd.grad(log_p, x)
        eps = eps.detach() - self.scale * (1 - abar).sqrt() * grad
        if prediction_type == "epsilon":
            return eps
        return output_from_x0_eps(x0_from_eps(x_t, eps, abar), eps, abar, prediction_type)


class ILVR:
    """Reference-image guidance: after every step of ``sampler``, replace the coarse structure of x by
    that of the reference noised to the same level, x <- x - phi(x) + phi(q_sample(ref, t_prev)).

    Choi et al., "ILVR: Conditioning Method for Denoising Diffusion Probabilistic Models", ICCV 2021,
    Alg. 1 (phi = ``low_pass`` by ``factor``; larger factors keep less of the reference). Guidance
    stops below ``stop_t`` so the model finishes the details. Meets the sampler protocol.
    """

    def __init__(self, sampler, reference: torch.Tensor, factor: int, noise_seed: int = 0, stop_t: int = 0):
        self.sampler, self.reference = sampler, check_tensor("reference", reference, ndim=4)
        self.factor, self.stop_t = check_int("factor", factor, 1), check_int("stop_t", stop_t, 0)
        self.noise = torch.Generator().manual_seed(check_int("noise_seed", noise_seed, 0))

    @property
    def prediction_type(self) -> str | None:
        return getattr(self.sampler, "prediction_type", None)

    def plan(self, T: int) -> list[tuple[int, int]]:
        return self.sampler.plan(T)

    def step(self, model_output, t, prev_t, x, schedule, generator=None):
        x_prev, x0 = self.sampler.step(model_output, t, prev_t, x, schedule, generator)
        if prev_t < self.stop_t:
            return x_prev, x0
        ref = self.reference.to(x_prev)
        if prev_t >= 0:
            ref = q_sample(ref, prev_t, randn(ref.shape, self.noise, ref.device, ref.dtype), schedule)
        return x_prev - low_pass(x_prev, self.factor) + low_pass(ref, self.factor), x0
