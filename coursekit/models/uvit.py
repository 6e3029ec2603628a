"""U-ViT: a ViT in which time, condition and image patches are all tokens, with U-Net-like long skips.

Bao et al., "All are Worth Words: A ViT Backbone for Diffusion Models", CVPR 2023. Tokens are
[time, condition..., patches] with a learned position embedding (sec. 3); depth/2 "in" blocks,
one middle block and depth/2 "out" blocks, where out-block i first fuses the output of its mirror
in-block with Linear(concat(h, skip)) (the long skip, sec. 3.1 and Fig. 2); then a linear patch
decoder and an optional 3x3 conv (sec. 3.1, "the last conv"). ``skip=False`` is the paper's
ablation without long skips.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .._checks import check_float, check_index, check_int, check_tensor, check_timesteps
from .layers import Attention, TimestepMLP, config_repr, timestep_embedding, unpatchify
from .text import WIDTH as TEXT_WIDTH


@dataclass(frozen=True)
class UViTConfig:
    """image_size / patch_size: the token grid. Condition: class labels (``num_classes``, with a null
    class for guidance), or ``context_len`` tokens of width ``context_dim`` (text, as U-ViT's
    text-to-image model), or nothing. ``time_mlp``: the time token passes through Linear-SiLU-Linear
    of width ``hidden`` (the official code's ``mlp_time_embed``, whose inner layer is 4x wider) instead of
    being the bare sinusoidal features."""

    image_size: int = 32
    patch_size: int = 2
    in_channels: int = 3
    hidden: int = 512
    depth: int = 12
    heads: int = 8
    mlp_ratio: float = 4.0
    num_classes: int | None = None
    context_dim: int | None = None
    context_len: int = 0
    skip: bool = True
    conv: bool = True
    time_mlp: bool = False

    def __post_init__(self):
        for name in ("image_size", "patch_size", "in_channels", "hidden", "depth", "heads"):
            check_int(name, getattr(self, name), 1)
        if self.image_size % self.patch_size:
            raise ValueError(f"patch_size must divide image_size={self.image_size}, got {self.patch_size}")
        if self.hidden % self.heads:
            raise ValueError(f"heads must divide hidden={self.hidden}, got {self.heads}")
        if self.depth % 2 == 0:
            raise ValueError(f"depth must be odd (in-blocks, a middle block, out-blocks), got {self.depth}")
        check_float("mlp_ratio", self.mlp_ratio, 0.0)
        if self.num_classes is not None:
            check_int("num_classes", self.num_classes, 1)
            if self.context_dim is not None:
                raise ValueError("num_classes and context_dim are exclusive: condition on a class or on tokens")
        if self.context_dim is not None:
            check_int("context_dim", self.context_dim, 1)
            check_int("context_len", self.context_len, 1)
        elif self.context_len:
            raise ValueError("context_len needs context_dim")

    @property
    def extras(self) -> int:
        """Tokens before the patches: time, then the class or the context tokens."""
        return 1 + (self.num_classes is not None) + (self.context_len if self.context_dim else 0)


class UViTBlock(nn.Module):
    """A pre-norm Transformer block; out-blocks first fuse the long skip with a linear layer."""

    def __init__(self, cfg: UViTConfig, skip: bool):
        super().__init__()
        D = cfg.hidden
        self.skip = nn.Linear(2 * D, D) if skip else None
        self.norm1, self.attn = nn.LayerNorm(D), Attention(D, cfg.heads, qkv_bias=False)
        inner = int(D * cfg.mlp_ratio)
        self.norm2, self.mlp = nn.LayerNorm(D), nn.Sequential(nn.Linear(D, inner), nn.GELU(), nn.Linear(inner, D))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.skip is not None:
            x = self.skip(torch.cat([x, skip], dim=-1))  # (B, N, 2D) -> (B, N, D)
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class UViT(nn.Module):
    """eps = uvit(x_t, t, cond): cond is (B,) class labels, (B, context_len, context_dim) tokens, or None."""

    def __init__(self, cfg: UViTConfig):
        super().__init__()
        if not isinstance(cfg, UViTConfig):
            raise ValueError(f"cfg must be a UViTConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        D, p = cfg.hidden, cfg.patch_size
        self.patch = nn.Conv2d(cfg.in_channels, D, p, stride=p)
        if cfg.num_classes is not None:
            self.label = nn.Embedding(cfg.num_classes + 1, D)  # the last row is the null class
        if cfg.context_dim is not None:
            self.context = nn.Linear(cfg.context_dim, D)
        # as the official code's ``mlp_time_embed``: Linear -> SiLU -> Linear over the sinusoidal features
        self.time_embed = TimestepMLP(D, D, flip_sin_to_cos=True, freq_shift=0) if cfg.time_mlp else None
        tokens = cfg.extras + (cfg.image_size // p) ** 2
        self.pos = nn.Parameter(torch.zeros(1, tokens, D))
        half = cfg.depth // 2
        self.in_blocks = nn.ModuleList(UViTBlock(cfg, skip=False) for _ in range(half))
        self.mid_block = UViTBlock(cfg, skip=False)
        self.out_blocks = nn.ModuleList(UViTBlock(cfg, skip=cfg.skip) for _ in range(half))
        self.norm = nn.LayerNorm(D)
        self.decoder = nn.Linear(D, p * p * cfg.in_channels)
        self.final = nn.Conv2d(cfg.in_channels, cfg.in_channels, 3, padding=1) if cfg.conv else nn.Identity()
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """As the official code: truncated N(0, 0.02) for linear layers and positions, zero biases; and,
        unlike it, the last conv starts as the identity. With PyTorch's default init that conv is a random
        mixer of colours and neighbours that the network must first learn to undo: the zoo's U-ViT trained so
        for 6 GPU minutes kept a loss 4-8x the U-Net's at low noise (held-out v-loss of a small U-ViT after
        300 CPU steps: 0.265 with the random conv, 0.159 with the identity, 0.156 without the conv)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias) if m.bias is not None else None
        nn.init.trunc_normal_(self.pos, std=0.02)
        if isinstance(self.final, nn.Conv2d):
            nn.init.dirac_(self.final.weight)
            nn.init.zeros_(self.final.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        return self.decode(self.trunk(self.embed(x, t, cond)))

    def embed(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        """The token sequence [time, condition..., patches] plus positions: (B, extras + T, D)."""
        cfg = self.cfg
        check_tensor("x", x, shape=(None, cfg.in_channels, cfg.image_size, cfg.image_size), finite=False)
        B = x.shape[0]
        t = check_timesteps("t", t, 2**62, batch=B).expand(B)
        if self.time_embed is not None:
            tokens = [self.time_embed(t)[:, None].to(x.dtype)]  # (B, 1, D)
        else:
            tokens = [timestep_embedding(t, cfg.hidden, flip_sin_to_cos=True, freq_shift=0)[:, None].to(x.dtype)]
        if cfg.num_classes is not None:
            if cond is None:
                cond = torch.full((B,), cfg.num_classes, dtype=torch.long, device=x.device)
            check_tensor("cond", cond, shape=(B,), floating=False)
            check_index("cond", cond, cfg.num_classes + 1)
            tokens.append(self.label(cond)[:, None])
        elif cfg.context_dim is not None:
            check_tensor("cond", cond, shape=(B, cfg.context_len, cfg.context_dim), finite=False)
            tokens.append(self.context(cond.to(x.dtype)))  # (B, L, D)
        elif cond is not None:
            raise ValueError("cond must be None for an unconditional U-ViT")
        patches = self.patch(x).flatten(2).transpose(1, 2)  # (B, T, D)
        return torch.cat([*tokens, patches], dim=1) + self.pos  # (B, extras + T, D)

    def trunk(self, h: torch.Tensor) -> torch.Tensor:
        """The blocks: out-block i fuses the output of in-block depth // 2 - 1 - i (the long skips nest, the
        last in-block feeding the first out-block, as the levels of a U-Net)."""
        check_tensor("h", h, shape=(None, self.pos.shape[1], self.cfg.hidden), finite=False)
        skips = []
        for block in self.in_blocks:
            h = block(h)
            skips.append(h)
        h = self.mid_block(h)
        for block in self.out_blocks:
            h = block(h, skips.pop())
        return h

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """Patch tokens back to an image (B, C, H, W): norm, linear decoder, unpatchify, the last conv."""
        cfg = self.cfg
        check_tensor("h", h, shape=(None, self.pos.shape[1], cfg.hidden), finite=False)
        h = self.decoder(self.norm(h))[:, cfg.extras:]  # (B, T, p*p*C)
        return self.final(unpatchify(h, cfg.patch_size, cfg.in_channels))

    def extra_repr(self) -> str:
        return config_repr(self.cfg)



def uvit_shapes(**overrides) -> UViTConfig:
    """The course's text-to-image U-ViT for 32x32 shapes images: width 256, depth 7, 4 heads, patch 2,
    the 32 caption tokens (128 wide) as tokens beside time and patches."""
    return UViTConfig(**{**dict(image_size=32, patch_size=2, in_channels=3, hidden=256, depth=7, heads=4,
                                context_dim=TEXT_WIDTH, context_len=32), **overrides})


def uvit_small(**overrides) -> UViTConfig:
    """U-ViT-S/2 as trained on CIFAR-10 (Table 6 of the paper: D 512, depth 13, 8 heads, patch 2)."""
    return UViTConfig(**{**dict(hidden=512, depth=13, heads=8, patch_size=2), **overrides})
