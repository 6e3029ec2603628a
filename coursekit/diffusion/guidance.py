"""Guidance at sampling time, as wrappers that turn a denoiser into a guided one (classifier-free, through the
clean-image estimate, pixel layouts) and a sampler that imposes a reference's coarse structure (ILVR)."""

from __future__ import annotations

from typing import Any

import torch

from .._checks import check_choice, check_float, check_int, check_tensor
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


LOW_PASS_MODES = ("bicubic", "box")


def low_pass(x: torch.Tensor, factor: int, mode: str = "bicubic") -> torch.Tensor:
    """phi_N of ILVR: shrink the image by ``factor`` and enlarge it back, keeping only its coarse structure.

    ``mode="bicubic"`` resizes both ways with an antialiased bicubic kernel, as ILVR's code does (its cubic
    "resizer"): smooth, with no block edges. ``mode="box"`` averages ``factor`` x ``factor`` blocks and copies
    each mean back over its block: a projection (box(box(x)) = box(x)), but it writes the block grid into
    every image it guides.
    """
    check_tensor("x", x, ndim=4, finite=False)
    check_int("factor", factor, 1)
    check_choice("mode", mode, LOW_PASS_MODES)
    H, W = x.shape[-2:]
    if H % factor or W % factor:
        raise ValueError(f"factor must divide the image's height and width {H}x{W}, got {factor}")
    F = torch.nn.functional
    if mode == "box":
        return F.interpolate(F.avg_pool2d(x, factor), scale_factor=factor, mode="nearest")
    small = F.interpolate(x, size=(H // factor, W // factor), mode="bicubic", antialias=True, align_corners=False)
    return F.interpolate(small, size=(H, W), mode="bicubic", align_corners=False)


class UniversalGuidance:
    """Steer sampling with any differentiable score of the clean image:
    eps' = eps - scale * sqrt(1 - abar_t) * grad_{x_t} log_p(x0_hat(x_t)).

    Classifier guidance's eps form (Dhariwal & Nichol 2021, eq. 14), with the classifier's log p(y | x_t)
    replaced by a function of the denoiser's clean-image estimate, so an off-the-shelf model of clean images
    (a classifier, a distance to a layout) can guide: "forward universal guidance" (Bansal et al., "Universal
    Guidance for Diffusion Models", 2023, eq. 6; Ho et al., "Video Diffusion Models", 2022, eq. 7). The gradient
    flows back through the denoiser. ``log_p(x0_hat)`` returns one value per image (B,). The guided eps' and the
    x0' it implies are returned in the denoiser's own ``prediction_type``.
    """

    def __init__(self, denoiser: Denoiser, schedule, log_p, scale: float):
        if not callable(denoiser):
            raise ValueError(f"denoiser must be callable, got {type(denoiser).__name__}")
        if not callable(log_p):
            raise ValueError(f"log_p must be a function x0_hat -> (B,) log-probabilities, got {type(log_p).__name__}")
        self.denoiser, self.schedule, self.log_p = denoiser, schedule, log_p
        self.scale = check_float("scale", scale, 0.0)

    @property
    def prediction_type(self) -> str:
        return prediction_type_of(self.denoiser)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        abar, prediction_type = self.schedule.abar(t, x_t), self.prediction_type
        with torch.enable_grad():
            x = x_t.detach().requires_grad_(True)
            x0, eps = x0_eps_from_output(self.denoiser(x, t, cond), x, abar, prediction_type)
            log_p = self.log_p(x0)
            check_tensor("log_p(x0_hat)", log_p, shape=(x_t.shape[0],), finite=False)
            (grad,) = torch.autograd.grad(log_p.sum(), x)
        eps = eps.detach() - self.scale * (1 - abar).sqrt() * grad
        if prediction_type == "epsilon":
            return eps
        return output_from_x0_eps(x0_from_eps(x_t, eps, abar), eps, abar, prediction_type)


class PixelGuidance(UniversalGuidance):
    """Steer sampling towards a coarse colour layout: ``UniversalGuidance`` with
    log p(layout | x_t) ~ -||pool(x0_hat(x_t)) - layout||^2 / 2 (reconstruction guidance).
    ``layout``: (B, C, H/f, W/f) in [-1, 1], ``f`` = ``factor``.
    """

    def __init__(self, denoiser: Denoiser, schedule, layout: torch.Tensor, scale: float, factor: int):
        self.layout = check_tensor("layout", layout, ndim=4)
        self.factor = check_int("factor", factor, 1)
        super().__init__(denoiser, schedule, self.layout_log_p, scale)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        if x_t.shape[-1] != self.layout.shape[-1] * self.factor or x_t.shape[0] != self.layout.shape[0]:
            raise ValueError(f"layout must have shape (B, C, H/{self.factor}, W/{self.factor}) for x_t "
                             f"{tuple(x_t.shape)}, got {tuple(self.layout.shape)}")
        return super().__call__(x_t, t, cond)

    def layout_log_p(self, x0: torch.Tensor) -> torch.Tensor:
        """-||avg_pool(x0, factor) - layout||^2 / 2 per image."""
        return -0.5 * ((torch.nn.functional.avg_pool2d(x0, self.factor) - self.layout) ** 2).flatten(1).sum(1)


class ILVR:
    """Reference-image guidance: after every step of ``sampler``, replace the coarse structure of x by
    that of the reference noised to the same level, x <- x - phi(x) + phi(q_sample(ref, t_prev)).

    Choi et al., "ILVR: Conditioning Method for Denoising Diffusion Probabilistic Models", ICCV 2021,
    Alg. 1 (phi = ``low_pass`` by ``factor`` with ``mode``; larger factors keep less of the reference).
    A step is refined while the level it reaches is at least ``stop_t``; the last step reaches the clean image
    (level 0), where Alg. 1 uses the reference itself, y_0 = y. So ``stop_t=0`` refines every step, a larger
    ``stop_t`` leaves the model the details below it, and ``stop_t`` above the first level refines none. (The
    authors' code refines while ``i > range_t``, with the reference noised to the step's starting level: its
    last step is never refined.) Meets the sampler protocol.
    """

    def __init__(self, sampler, reference: torch.Tensor, factor: int, noise_seed: int = 0, stop_t: int = 0,
                 mode: str = "bicubic"):
        self.sampler, self.reference = sampler, check_tensor("reference", reference, ndim=4)
        self.factor, self.stop_t = check_int("factor", factor, 1), check_int("stop_t", stop_t, 0)
        self.mode = check_choice("mode", mode, LOW_PASS_MODES)
        low_pass(self.reference, self.factor)  # factor must divide the reference's size
        self.noise = torch.Generator().manual_seed(check_int("noise_seed", noise_seed, 0))

    @property
    def prediction_type(self) -> str | None:
        return getattr(self.sampler, "prediction_type", None)

    def plan(self, T: int) -> list[tuple[int, int]]:
        return self.sampler.plan(T)

    def step(self, model_output, t, prev_t, x, schedule, generator=None):
        x_prev, x0 = self.sampler.step(model_output, t, prev_t, x, schedule, generator)
        level = max(prev_t, 0)  # prev_t < 0: the step's result is the clean image
        if level < self.stop_t:
            return x_prev, x0
        ref = self.reference.to(x_prev)
        if prev_t >= 0:  # y_{t-1} ~ q(y_{t-1} | y_0); at the clean level y_0 itself
            ref = q_sample(ref, prev_t, randn(ref.shape, self.noise, ref.device, ref.dtype), schedule)
        # x_{t-1} <- x_{t-1} - phi_N(x_{t-1}) + phi_N(y_{t-1})   (Alg. 1, line 5)
        return x_prev - low_pass(x_prev, self.factor, self.mode) + low_pass(ref, self.factor, self.mode), x0
