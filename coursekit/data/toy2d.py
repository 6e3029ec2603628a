"""2-D toy distributions for intuition, for DDIB, and (Gaussian mixtures) as exact oracles.

Every sampler returns float32 points (n, 2) scaled to roughly unit spread, and is deterministic
given its generator. Moons, circles and the Swiss roll follow scikit-learn's ``make_*`` recipes;
the checkerboard and the Gaussian ring are the usual flow-matching / DDIB test sets.
"""

from __future__ import annotations

import math

import torch

from .._checks import check_choice, check_float, check_int, generator_from
from .mixture import GaussianMixture


def _moons(n: int, generator: torch.Generator | None = None, noise: float = 0.05) -> torch.Tensor:
    """Two interleaving half circles (scikit-learn ``make_moons``), centred and scaled."""
    k = torch.randint(2, (n,), generator=generator)
    a = torch.rand(n, generator=generator) * math.pi
    x = torch.where(k == 0, torch.cos(a), 1 - torch.cos(a))
    y = torch.where(k == 0, torch.sin(a), 0.5 - torch.sin(a))
    pts = torch.stack([x - 0.5, y - 0.25], 1) * 1.6
    return pts + noise * torch.randn(n, 2, generator=generator)


def _circles(n: int, generator: torch.Generator | None = None, noise: float = 0.04) -> torch.Tensor:
    """Two concentric circles of radius 1.5 and 0.75 (scikit-learn ``make_circles``, factor 0.5)."""
    k = torch.randint(2, (n,), generator=generator)
    a = torch.rand(n, generator=generator) * 2 * math.pi
    r = torch.where(k == 0, 1.5, 0.75)
    pts = torch.stack([r * torch.cos(a), r * torch.sin(a)], 1)
    return pts + noise * torch.randn(n, 2, generator=generator)


def _checkerboard(n: int, generator: torch.Generator | None = None, squares: int = 4) -> torch.Tensor:
    """Uniform on the dark squares of a ``squares`` x ``squares`` board over [-2, 2]^2."""
    cell = torch.randint(squares * squares // 2, (n,), generator=generator)
    row = cell // (squares // 2)
    col = (cell % (squares // 2)) * 2 + row % 2  # dark squares: row + col even
    u = torch.rand(n, 2, generator=generator)
    side = 4 / squares
    return torch.stack([(col + u[:, 0]) * side - 2, (row + u[:, 1]) * side - 2], 1)


def _swiss_roll(n: int, generator: torch.Generator | None = None, noise: float = 0.05) -> torch.Tensor:
    """The 2-D Swiss roll t (cos t, sin t), t in [1.5 pi, 4.5 pi] (scikit-learn ``make_swiss_roll``)."""
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=generator))
    pts = torch.stack([t * torch.cos(t), t * torch.sin(t)], 1) / 7
    return pts + noise * torch.randn(n, 2, generator=generator)


def gaussian_ring(k: int = 8, radius: float = 2.0, std: float = 0.2) -> GaussianMixture:
    """``k`` equal Gaussians of standard deviation ``std`` evenly spaced on a circle: an exact oracle."""
    check_int("k", k, 1)
    check_float("radius", radius, 0.0)
    if check_float("std", std, 0.0) == 0:
        raise ValueError("std must be > 0")
    a = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
    means = radius * torch.stack([torch.cos(a), torch.sin(a)], 1)
    return GaussianMixture(means, torch.full((k, 2), std**2, dtype=torch.float64))


def paired_ring(k: int = 8, radius: float = 2.0, std: float = 0.5, code: float = 1.5,
                code_std: float = 0.05) -> GaussianMixture:
    """Points of ``gaussian_ring(k, radius, std)`` paired with a label code: the joint of (x, y) on R^(2 + k), where
    component j is x ~ N(mu_j, std^2 I) beside y ~ N(code e_j, code_std^2 I). Every distribution UniDiffuser learns
    (p(x), p(y), p(x | y), p(y | x), the joint) is then a Gaussian mixture with a known noised score: the first 2
    coordinates are the "image", the other k the "text". With std 0.5 neighbouring components overlap, so naming a
    point's label is uncertain and image-to-text must be calibrated, not a lookup."""
    ring = gaussian_ring(k, radius, std)
    if check_float("code", code, 0.0) == 0 or check_float("code_std", code_std, 0.0) == 0:
        raise ValueError(f"code and code_std must be > 0, got {code} and {code_std}")
    means = torch.cat([ring.means, code * torch.eye(k, dtype=torch.float64)], 1)
    variances = torch.cat([ring.eigvals, torch.full((k, k), code_std**2, dtype=torch.float64)], 1)
    return GaussianMixture(means, variances)


def _gaussians(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Samples of ``gaussian_ring()``."""
    return gaussian_ring().sample(n, generator)[0]


TOYS = {"moons": _moons, "circles": _circles, "checkerboard": _checkerboard, "swiss_roll": _swiss_roll,
        "gaussians": _gaussians}


def sample(name: str, n: int, seed: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` points (n, 2) float32 of the toy ``name`` (one of ``TOYS``), from ``seed`` or ``generator``."""
    check_choice("name", name, TOYS)
    check_int("n", n, 1)
    return TOYS[name](n, generator_from(seed, generator)).float()
