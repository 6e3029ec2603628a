"""Layers every network in the course shares: timestep embeddings, attention, feed-forward, modulation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_int


def timestep_embedding(
    t: torch.Tensor, dim: int, flip_sin_to_cos: bool = False, freq_shift: float = 1.0, max_period: float = 10000.0
) -> torch.Tensor:
    """Sinusoidal features of t (B,) -> (B, dim): [sin(t w_i), cos(t w_i)], w_i = max_period^(-i / (dim/2 - freq_shift)).

    The Transformer's position encoding (Vaswani et al., NeurIPS 2017, sec. 3.5) applied to the
    diffusion step, as in DDPM (Ho et al. 2020, appendix B). Codebases differ in two details:
    ``flip_sin_to_cos`` puts cos first (official DiT, Stable Diffusion) and ``freq_shift`` changes
    the denominator: 0 gives i / (dim/2) (official DiT, SD), 1 gives i / (dim/2 - 1) (DDPM's
    TensorFlow code, diffusers' ``DiTTransformer2DModel``).
    """
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / (half - freq_shift)
    angles = t[:, None].float() * torch.exp(exponent)[None, :]  # (B, half)
    sin, cos = torch.sin(angles), torch.cos(angles)
    return torch.cat([cos, sin] if flip_sin_to_cos else [sin, cos], dim=-1)


class TimestepMLP(nn.Module):
    """Sinusoidal features of t, then Linear -> SiLU -> Linear (DDPM appendix B; DiT's TimestepEmbedder)."""

    def __init__(self, freq_dim: int, dim: int, flip_sin_to_cos: bool = False, freq_shift: float = 1.0):
        super().__init__()
        self.freq_dim, self.flip_sin_to_cos, self.freq_shift = freq_dim, flip_sin_to_cos, freq_shift
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        features = timestep_embedding(t, self.freq_dim, self.flip_sin_to_cos, self.freq_shift)
        return self.mlp(features.to(self.mlp[0].weight.dtype))  # (B, dim)


class Attention(nn.Module):
    """Multi-head scaled dot-product attention (Vaswani et al. 2017, eq. 1) via ``F.scaled_dot_product_attention``.

    Self-attention projects q, k, v with one fused linear layer; with ``context_dim`` it is
    cross-attention: queries from x, keys and values from the context (e.g. text tokens). ``upcast``: in a 16-bit
    network, compute the attention itself in float32 (diffusers' ``upcast_attention``: Stable Diffusion 2.1's
    attention logits overflow float16).
    """

    def __init__(self, dim: int, heads: int, context_dim: int | None = None, qkv_bias: bool = True,
                 upcast: bool = False):
        super().__init__()
        check_int("heads", heads, 1)
        if dim % heads:
            raise ValueError(f"heads must divide the width {dim}, got heads={heads}")
        self.heads, self.upcast = heads, upcast
        if context_dim is None:
            self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        else:
            self.q = nn.Linear(dim, dim, bias=qkv_bias)
            self.kv = nn.Linear(context_dim, 2 * dim, bias=qkv_bias)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        B, N, D = x.shape
        if context is None:
            q, k, v = self.qkv(x).chunk(3, dim=-1)  # 3 x (B, N, D)
        else:
            q, (k, v) = self.q(x), self.kv(context).chunk(2, dim=-1)  # (B, N, D), 2 x (B, M, D)
        q, k, v = (z.unflatten(-1, (self.heads, -1)).transpose(1, 2) for z in (q, k, v))  # (B, H, N or M, D/H)
        if self.upcast and q.dtype in (torch.float16, torch.bfloat16):
            out = F.scaled_dot_product_attention(q.float(), k.float(), v.float()).to(q.dtype)
        else:
            out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(D/H)) v, (B, H, N, D/H)
        return self.out(out.transpose(1, 2).reshape(B, N, D))


class GEGLU(nn.Module):
    """x -> a * GELU(b) with [a, b] = Linear(x) (Shazeer, "GLU variants improve Transformer", 2020)."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(b)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Adaptive layer norm's affine step x * (1 + scale) + shift, per sample (Peebles & Xie, DiT, sec. 3.2)."""
    return x * (1 + scale[:, None]) + shift[:, None]


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, T, p*p*C): non-overlapping p x p patches in row-major order, each patch's
    numbers ordered (row, column, channel) as in DiT and U-ViT (Dosovitskiy et al., ICLR 2021, sec. 3.1)."""
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(B, (H // p) * (W // p), p * p * C)


def unpatchify(h: torch.Tensor, p: int, channels: int) -> torch.Tensor:
    """(B, T, p*p*C) -> (B, C, H, W) for a square grid of T patches: the inverse of ``patchify``."""
    B, T, _ = h.shape
    n = math.isqrt(T)
    h = h.reshape(B, n, n, p, p, channels)
    return torch.einsum("nhwpqc->nchpwq", h).reshape(B, channels, n * p, n * p)


def config_repr(cfg) -> str:
    """A module's ``extra_repr``: its config's fields."""
    from dataclasses import asdict

    return ", ".join(f"{k}={v}" for k, v in asdict(cfg).items())
