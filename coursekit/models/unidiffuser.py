"""UniDiffuser: one network for the marginal, both conditionals and the joint of two modalities.

Bao et al., "One Transformer Fits All Distributions in Multi-Modal Diffusion at Scale", ICML 2023. Noise the
image x and the text y with *independent* timesteps and train one network eps_theta(x_{t_x}, y_{t_y}, t_x, t_y)
to predict both noises (``diffusion.loss.unidiffuser_loss``, the paper's eq. 5). Every distribution is then a
choice of timesteps (sec. 3.2; ``sample_multi_v1.py`` in thu-ml/unidiffuser):

- p(x | y_0): t_y = 0, the text clean (text-to-image); p(y | x_0): t_x = 0 (image-to-text);
- p(x): t_y = T, the text pure noise, and p(y) likewise; the joint: t_x = t_y = t;
- classifier-free guidance for free: the conditional and the marginal come from the same network, so
  eps~ = (1 + s) eps(x_t, y_0, t, 0) - s eps(x_t, eps_y, t, T) needs no caption dropout in training.

``UniDiffuser`` turns a two-modality network into those tasks, each an ordinary ``(x_t, t, cond)`` denoiser that
the course's samplers and ``ClassifierFreeGuidance`` run unchanged. The network may be trained (``UniToyMLP`` on
points, ``UniUViT`` on images) or exact (``analytic.JointMixtureDenoiser``): the same calls then give the true
answers to compare against. A network names its modalities' per-sample shapes as ``x_shape`` and ``y_shape``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import check_generator, check_int, check_tensor, check_timesteps
from .layers import TimestepMLP
from .uvit import UViT, UViTConfig


class UniToyMLP(nn.Module):
    """(eps_x, eps_y) = net(x_t, y_t, t_x, t_y) for vectors x (B, dim_x) and y (B, dim_y): ``ToyMLP`` with both
    inputs concatenated and one time embedding per modality added (the paper's U-ViT gives each timestep a token)."""

    prediction_type = "epsilon"

    def __init__(self, dim_x: int, dim_y: int, width: int = 256, depth: int = 3):
        super().__init__()
        self.dim_x, self.dim_y = check_int("dim_x", dim_x, 1), check_int("dim_y", dim_y, 1)
        self.x_shape, self.y_shape = (dim_x,), (dim_y,)
        check_int("width", width, 1)
        self.inp = nn.Linear(dim_x + dim_y, width)
        self.t_x, self.t_y = TimestepMLP(64, width), TimestepMLP(64, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(width, width))
                                    for _ in range(check_int("depth", depth, 1)))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(width, dim_x + dim_y))

    def forward(self, x_t: torch.Tensor, y_t: torch.Tensor, t_x: torch.Tensor,
                t_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_tensor("x_t", x_t, shape=(None, self.dim_x))
        check_tensor("y_t", y_t, shape=(x_t.shape[0], self.dim_y))
        B = x_t.shape[0]
        t_x, t_y = (t.expand(B) if t.ndim == 0 else t for t in (t_x, t_y))
        h = self.inp(torch.cat([x_t, y_t], 1)) + self.t_x(t_x) + self.t_y(t_y)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h).split([self.dim_x, self.dim_y], 1)


class UniUViT(nn.Module):
    """(eps_x, eps_y) = net(x_t, y_t, t_x, t_y) for images x (B, C, H, W) and short vectors y (B, dim_y): the paper's
    U-ViT (sec. 4.1) with the text as tokens among the patches. ``cfg`` is a ``UViTConfig`` with ``context_dim`` =
    dim_y and ``context_len`` = 1: tokens [t_x, y_t, patches]; t_y's embedding is added to the text token (the paper
    gives it a token of its own; one fewer here), and eps_y is read from the text token after the last block."""

    prediction_type = "epsilon"

    def __init__(self, cfg: UViTConfig):
        super().__init__()
        if not isinstance(cfg, UViTConfig) or cfg.context_dim is None or cfg.context_len != 1:
            raise ValueError("cfg must be a UViTConfig with context_dim = dim_y and context_len = 1, got "
                             f"{cfg!r}")
        self.uvit = UViT(cfg)
        self.x_shape = (cfg.in_channels, cfg.image_size, cfg.image_size)
        self.y_shape = (cfg.context_dim,)
        self.t_y = TimestepMLP(cfg.hidden, cfg.hidden)
        self.y_out = nn.Linear(cfg.hidden, cfg.context_dim)

    def forward(self, x_t: torch.Tensor, y_t: torch.Tensor, t_x: torch.Tensor,
                t_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_tensor("y_t", y_t, shape=(x_t.shape[0], *self.y_shape))
        B = x_t.shape[0]
        t_y = check_timesteps("t_y", t_y, 2**62, batch=B).expand(B)
        h = self.uvit.embed(x_t, t_x, y_t[:, None])  # (B, 2 + patches, D), checks x_t and t_x
        h = torch.cat([h[:, :1], h[:, 1:2] + self.t_y(t_y)[:, None].to(h.dtype), h[:, 2:]], 1)
        h = self.uvit.trunk(h)
        return self.uvit.decode(h), self.y_out(self.uvit.norm(h)[:, 1])


class _Task:
    """One distribution of a ``UniDiffuser`` as a denoiser of one modality (``which`` "x" or "y"), or of both
    flattened and concatenated ("joint")."""

    prediction_type = "epsilon"

    def __init__(self, uni: UniDiffuser, which: str, generator: torch.Generator | None):
        check_generator("generator", generator)
        self.uni, self.which, self.generator = uni, which, generator

    def __call__(self, z_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        net, T = self.uni.network, self.uni.T
        xs, ys = net.x_shape, net.y_shape
        dx, dy = math.prod(xs), math.prod(ys)
        check_tensor("z_t", z_t, shape=(None, *{"x": xs, "y": ys, "joint": (dx + dy,)}[self.which]))
        B = z_t.shape[0]
        t = check_timesteps("t", t, T, batch=B).expand(B)
        if self.which == "joint":
            if cond is not None:
                raise ValueError("cond must be None for the joint: both modalities are sampled")
            x_t, y_t = z_t.split([dx, dy], 1)
            eps_x, eps_y = net(x_t.reshape(B, *xs), y_t.reshape(B, *ys), t, t)
            return torch.cat([eps_x.flatten(1), eps_y.flatten(1)], 1)
        other = ys if self.which == "x" else xs
        if cond is None:  # the other modality at t = T - 1, pure noise: the marginal
            device = self.generator.device if self.generator is not None else z_t.device
            cond = torch.randn(B, *other, generator=self.generator, device=device).to(z_t)
            t_other = torch.full_like(t, T - 1)
        else:  # clean, t = 0: the conditional
            check_tensor("cond", cond, shape=(B, *other))
            t_other = torch.zeros_like(t)
        if self.which == "x":
            return net(z_t, cond, t, t_other)[0]
        return net(cond, z_t, t_other, t)[1]

    def __repr__(self) -> str:
        return f"UniDiffuser task {self.which!r} of {type(self.uni.network).__name__}"


class UniDiffuser:
    """The tasks of one two-modality network ``network(x_t, y_t, t_x, t_y) -> (eps_x, eps_y)`` (with per-sample
    shapes ``x_shape``, ``y_shape``), trained with ``T`` timesteps:

    - ``image(generator)``: a denoiser over x; cond y_0 (B, *y_shape) gives p(x | y_0), cond None p(x) (the text at
      T - 1, fresh noise from ``generator`` at every call). So ``ClassifierFreeGuidance(uni.image(g), 1 + s)``
      is the paper's free guidance.
    - ``text(generator)``: the same over y, conditioned on x_0.
    - ``joint()``: a denoiser over [x, y] flattened and concatenated (B, |x| + |y|), both at one timestep.
    """

    def __init__(self, network, T: int):
        shapes = [getattr(network, name, None) for name in ("x_shape", "y_shape")]
        if not callable(network) or not all(isinstance(s, tuple) and s and all(isinstance(d, int) and d > 0 for d in s)
                                            for s in shapes):
            raise ValueError("network must be callable (x_t, y_t, t_x, t_y) with per-sample shapes x_shape and "
                             f"y_shape (tuples of positive ints), got {type(network).__name__}")
        self.network, self.T = network, check_int("T", T, 2)

    def image(self, generator: torch.Generator | None = None) -> _Task:
        return _Task(self, "x", generator)

    def text(self, generator: torch.Generator | None = None) -> _Task:
        return _Task(self, "y", generator)

    def joint(self) -> _Task:
        return _Task(self, "joint", None)

    def __repr__(self) -> str:
        return f"UniDiffuser({type(self.network).__name__}, T={self.T})"
