"""The diffusion U-Net: residual blocks with a timestep embedding, attention, and skip connections.

Ronneberger et al., "U-Net", MICCAI 2015 (the encoder-decoder with skips); Ho et al., "DDPM",
NeurIPS 2020, appendix B (Wide-ResNet blocks with GroupNorm, sinusoidal time embedding added in
every block, self-attention at 16x16); Rombach et al., "Latent Diffusion", CVPR 2022, sec. 3.3
(a spatial transformer with cross-attention to text tokens at chosen resolutions). One config
covers both families, so that diffusers' ``UNet2DModel`` and ``UNet2DConditionModel`` map onto it
weight for weight (``from_diffusers``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import (check_choice, check_config_keys, check_float, check_int, check_tensor, check_timesteps,
                       init_defaults)
from .layers import GEGLU, Attention, TimestepMLP, config_repr
from .text import WIDTH as TEXT_WIDTH


@dataclass(frozen=True)
class UNetConfig:
    """Every choice of the architecture. Per-level tuples run from the highest resolution down.

    attention[i]: attention after each residual block of level i (and of its mirror on the way up).
    heads[i]: attention heads at level i (the middle block uses the last level's).
    transformer: False gives DDPM's attention block (GroupNorm, self-attention, residual); True
    gives LDM's spatial transformer (self-attention, cross-attention to ``context_dim``-wide
    tokens if set, GEGLU feed-forward). time_norm: "add" adds the embedding before the second
    GroupNorm (DDPM); "scale_shift" applies h * (1 + s) + b after it (Dhariwal & Nichol 2021).
    downsample_padding 0 pads right/bottom only (TensorFlow's "SAME", as DDPM's checkpoints).
    upcast_attention: the transformers' attention runs in float32 when the weights are 16-bit (SD 2.1).
    """

    in_channels: int = 3
    out_channels: int = 3
    channels: tuple[int, ...] = (128, 256, 256, 256)
    attention: tuple[bool, ...] = (False, True, False, False)
    heads: tuple[int, ...] = (1, 1, 1, 1)
    layers_per_level: int = 2
    mid_attention: bool = True
    transformer: bool = False
    context_dim: int | None = None
    linear_projection: bool = False
    norm_groups: int = 32
    norm_eps: float = 1e-6
    time_norm: str = "add"
    flip_sin_to_cos: bool = False
    freq_shift: float = 1.0
    downsample_padding: int = 1
    dropout: float = 0.0
    upcast_attention: bool = False

    def __post_init__(self):
        check_int("in_channels", self.in_channels, 1)
        check_int("out_channels", self.out_channels, 1)
        levels = len(self.channels)
        if levels < 1:
            raise ValueError("channels must name at least one level")
        for name in ("attention", "heads"):
            if len(getattr(self, name)) != levels:
                raise ValueError(f"{name} must have one entry per level ({levels}), got {getattr(self, name)}")
        check_int("norm_groups", self.norm_groups, 1)
        for c in self.channels:
            check_int("channels", c, 1)
            if c % self.norm_groups:
                raise ValueError(f"channels must be multiples of norm_groups={self.norm_groups}, got {self.channels}")
        for c, h, a in zip(self.channels, self.heads, self.attention):
            check_int("heads", h, 1)
            if (a or self.mid_attention) and c % h:
                raise ValueError(f"heads must divide each level's channels, got heads={self.heads} for {self.channels}")
        check_int("layers_per_level", self.layers_per_level, 1)
        if self.context_dim is not None:
            check_int("context_dim", self.context_dim, 1)
            if not self.transformer:
                raise ValueError("context_dim needs transformer=True (cross-attention lives in the spatial transformer)")
        check_float("norm_eps", self.norm_eps, 0.0)
        check_choice("time_norm", self.time_norm, ("add", "scale_shift"))
        check_choice("downsample_padding", self.downsample_padding, (0, 1))
        check_float("dropout", self.dropout, 0.0, 1.0)

    @property
    def time_dim(self) -> int:
        return 4 * self.channels[0]


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, plus the timestep embedding, -> GroupNorm -> SiLU -> dropout -> conv, plus
    the input (through a 1x1 conv when the width changes). DDPM appendix B; ``time_norm``: see UNetConfig."""

    def __init__(self, c_in: int, c_out: int, cfg: UNetConfig):
        super().__init__()
        self.scale_shift = cfg.time_norm == "scale_shift"
        self.norm1 = nn.GroupNorm(cfg.norm_groups, c_in, eps=cfg.norm_eps)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(cfg.time_dim, c_out * (2 if self.scale_shift else 1))
        self.norm2 = nn.GroupNorm(cfg.norm_groups, c_out, eps=cfg.norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        e = self.emb(emb)[:, :, None, None]  # emb arrives already through SiLU
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """DDPM's self-attention over all pixels: GroupNorm, multi-head attention, residual."""

    def __init__(self, channels: int, heads: int, cfg: UNetConfig):
        super().__init__()
        self.norm = nn.GroupNorm(cfg.norm_groups, channels, eps=cfg.norm_eps)
        self.attn = Attention(channels, heads)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        h = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        return x + self.attn(h).transpose(1, 2).reshape(B, C, H, W)


class TransformerBlock(nn.Module):
    """Pre-norm block: self-attention, cross-attention to the context, GEGLU feed-forward (LDM, Fig. 3)."""

    def __init__(self, dim: int, heads: int, context_dim: int | None, upcast: bool = False):
        super().__init__()
        self.norm1, self.attn1 = nn.LayerNorm(dim), Attention(dim, heads, qkv_bias=False, upcast=upcast)
        self.attn2 = None
        if context_dim is not None:
            self.norm2 = nn.LayerNorm(dim)
            self.attn2 = Attention(dim, heads, context_dim, qkv_bias=False, upcast=upcast)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(GEGLU(dim, 4 * dim), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))  # (B, HW, D)
        if self.attn2 is not None:
            x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """LDM's spatial transformer: GroupNorm, project in, transformer blocks over the HW tokens, project
    out, residual. The projections are 1x1 convs, or linear layers (SD 2's ``use_linear_projection``)."""

    def __init__(self, channels: int, heads: int, cfg: UNetConfig):
        super().__init__()
        self.linear = cfg.linear_projection
        proj = (lambda: nn.Linear(channels, channels)) if self.linear else (lambda: nn.Conv2d(channels, channels, 1))
        self.norm = nn.GroupNorm(cfg.norm_groups, channels, eps=1e-6)
        self.proj_in = proj()
        self.block = TransformerBlock(channels, heads, cfg.context_dim, cfg.upcast_attention)
        self.proj_out = proj()

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        h = self.norm(x)
        if self.linear:
            h = self.proj_in(h.permute(0, 2, 3, 1).reshape(B, H * W, C))  # (B, HW, C)
        else:
            h = self.proj_in(h).permute(0, 2, 3, 1).reshape(B, H * W, C)
        h = self.block(h, context)
        # back to (B, C, H, W) in contiguous memory, and h + x in this order, as diffusers writes them: on an input in
        # channels-last memory (VAE latents can be) the layouts that follow, and so GroupNorm's rounding, depend on both
        if self.linear:
            h = self.proj_out(h).reshape(B, H, W, C).permute(0, 3, 1, 2).contiguous()
        else:
            h = self.proj_out(h.reshape(B, H, W, C).permute(0, 3, 1, 2).contiguous())
        return h + x


class Downsample(nn.Module):
    """Halve the resolution with a stride-2 3x3 conv (padding 1, or right/bottom only with padding 0)."""

    def __init__(self, channels: int, padding: int):
        super().__init__()
        self.pad = padding == 0
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)) if self.pad else x)


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution of the down or up path: residual blocks, each followed by attention if enabled,
    then a resampler (except at the end of the path)."""

    def __init__(self, res: list[ResBlock], attn: list[nn.Module], resample: nn.Module | None):
        super().__init__()
        self.res, self.attn, self.resample = nn.ModuleList(res), nn.ModuleList(attn), resample


class UNet(nn.Module):
    """eps = unet(x_t, t, cond): the denoiser protocol. ``cond`` is the text tokens (B, L, context_dim)
    when the config has cross-attention, else None."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        if not isinstance(cfg, UNetConfig):
            raise ValueError(f"cfg must be a UNetConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        ch = cfg.channels
        self.time_embed = TimestepMLP(ch[0], cfg.time_dim, cfg.flip_sin_to_cos, cfg.freq_shift)
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)

        def attention(c: int, heads: int) -> nn.Module:
            return SpatialTransformer(c, heads, cfg) if cfg.transformer else AttentionBlock(c, heads, cfg)

        skips, c_prev = [ch[0]], ch[0]  # the widths of the activations the up path will concatenate
        self.down = nn.ModuleList()
        for i, c in enumerate(ch):
            res, attn = [], []
            for _ in range(cfg.layers_per_level):
                res.append(ResBlock(c_prev, c, cfg))
                attn += [attention(c, cfg.heads[i])] if cfg.attention[i] else []
                skips.append(c)
                c_prev = c
            last = i == len(ch) - 1
            self.down.append(Level(res, attn, None if last else Downsample(c, cfg.downsample_padding)))
            skips += [] if last else [c]

        self.mid1 = ResBlock(ch[-1], ch[-1], cfg)
        self.mid_attn = attention(ch[-1], cfg.heads[-1]) if cfg.mid_attention else None
        self.mid2 = ResBlock(ch[-1], ch[-1], cfg)

        self.up = nn.ModuleList()
        for i, c in reversed(list(enumerate(ch))):
            res, attn = [], []
            for _ in range(cfg.layers_per_level + 1):
                res.append(ResBlock(c_prev + skips.pop(), c, cfg))
                attn += [attention(c, cfg.heads[i])] if cfg.attention[i] else []
                c_prev = c
            self.up.append(Level(res, attn, Upsample(c) if i > 0 else None))

        self.norm_out = nn.GroupNorm(cfg.norm_groups, ch[0], eps=cfg.norm_eps)
        self.conv_out = nn.Conv2d(ch[0], cfg.out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.cfg
        check_tensor("x", x, ndim=4, finite=False)
        B, C, H, W = x.shape
        if C != cfg.in_channels:
            raise ValueError(f"x must have in_channels={cfg.in_channels} channels, got shape {tuple(x.shape)}")
        factor = 2 ** (len(cfg.channels) - 1)
        if H % factor or W % factor:
            raise ValueError(f"x's height and width must be multiples of {factor}, got {H}x{W}")
        t = check_timesteps("t", t, 2**62, batch=B).expand(B)
        if cfg.context_dim is None:
            if cond is not None:
                raise ValueError("cond must be None: this U-Net has no cross-attention")
        else:
            check_tensor("cond", cond, ndim=3, finite=False)
            if cond.shape[0] != B or cond.shape[2] != cfg.context_dim:
                raise ValueError(f"cond must have shape ({B}, L, {cfg.context_dim}), got {tuple(cond.shape)}")

        emb = F.silu(self.time_embed(t))  # (B, 4 C0); every ResBlock starts with this SiLU
        h = self.conv_in(x)
        skips = [h]
        for level in self.down:
            for j, res in enumerate(level.res):
                h = res(h, emb)
                h = level.attn[j](h, cond) if level.attn else h
                skips.append(h)
            if level.resample is not None:
                h = level.resample(h)
                skips.append(h)
        h = self.mid1(h, emb)
        h = self.mid_attn(h, cond) if self.mid_attn is not None else h
        h = self.mid2(h, emb)
        for level in self.up:
            for j, res in enumerate(level.res):
                h = res(torch.cat([h, skips.pop()], dim=1), emb)
                h = level.attn[j](h, cond) if level.attn else h
            if level.resample is not None:
                h = level.resample(h)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, C_out, H, W)

    def extra_repr(self) -> str:
        return config_repr(self.cfg)


# --- named sizes ---------------------------------------------------------------------------------


def unet_ddpm_cifar10(**overrides) -> UNetConfig:
    """DDPM's CIFAR-10 model (Ho et al. 2020, appendix B; diffusers' ``google/ddpm-cifar10-32``): 35.7M
    parameters, widths 128-256-256-256, self-attention at 16x16, dropout 0.1."""
    return UNetConfig(**{**dict(
        channels=(128, 256, 256, 256), attention=(False, True, False, False), heads=(1, 1, 1, 1),
        layers_per_level=2, norm_eps=1e-6, flip_sin_to_cos=False, freq_shift=1.0, downsample_padding=0,
        dropout=0.1,
    ), **overrides})


def unet_shapes(**overrides) -> UNetConfig:
    """The course's text-conditioned U-Net for 32x32 shapes images (SD's layout, shrunk): widths
    64-128-128, one residual block per level, spatial transformers with cross-attention to 128-wide
    text tokens at 16x16 and 8x8. 6.7M parameters (13.4 MB in 16-bit), 1.3 GMACs per image."""
    return UNetConfig(**{**dict(
        channels=(64, 128, 128), attention=(False, True, True), heads=(4, 4, 4), layers_per_level=1,
        transformer=True, context_dim=TEXT_WIDTH, norm_eps=1e-5, flip_sin_to_cos=True, freq_shift=0.0,
    ), **overrides})


def unet_sd15(**overrides) -> UNetConfig:
    """Stable Diffusion 1.5's U-Net (its ``unet/config.json``, diffusers' ``UNet2DConditionModel`` defaults with
    768-wide cross-attention): 4 latent channels, widths 320-640-1280-1280, two residual blocks per level, spatial
    transformers with 8 heads at the first three levels and in the middle, cross-attention to CLIP's 768-wide
    tokens. 860M parameters; SD 2.1 adds ``linear_projection`` and 1024-wide tokens."""
    return UNetConfig(**{**dict(
        in_channels=4, out_channels=4, channels=(320, 640, 1280, 1280), attention=(True, True, True, False),
        heads=(8, 8, 8, 8), layers_per_level=2, transformer=True, context_dim=768, norm_eps=1e-5,
        flip_sin_to_cos=True, freq_shift=0.0,
    ), **overrides})


# --- diffusers interop: configs both ways, and the weight mapping --------------------------------

_RENAMES = [  # diffusers name -> coursekit name, applied in order
    (r"^time_embedding\.linear_1\.", "time_embed.mlp.0."),
    (r"^time_embedding\.linear_2\.", "time_embed.mlp.2."),
    (r"^(down|up)_blocks\.", r"\1."),
    (r"\.resnets\.", ".res."),
    (r"\.attentions\.", ".attn."),
    (r"\.(down|up)samplers\.0\.", ".resample."),
    (r"^mid_block\.res\.0\.", "mid1."),
    (r"^mid_block\.res\.1\.", "mid2."),
    (r"^mid_block\.attn\.0\.", "mid_attn."),
    (r"\.time_emb_proj\.", ".emb."),
    (r"\.conv_shortcut\.", ".skip."),
    (r"\.group_norm\.", ".norm."),
    (r"\.transformer_blocks\.0\.", ".block."),
    (r"\.to_out\.0\.", ".out."),
    (r"\.ff\.net\.0\.", ".ff.0."),
    (r"\.ff\.net\.2\.", ".ff.1."),
    (r"^conv_norm_out\.", "norm_out."),
]


def convert_diffusers_state_dict(state_dict: dict, transformer: bool) -> dict:
    """A diffusers U-Net state dict renamed to coursekit's, with q, k, v fused as coursekit stores them."""
    out = {}
    for key, value in state_dict.items():
        if not transformer:  # DDPM attention: coursekit keeps the projections in a sub-module ``attn``
            key = re.sub(r"(attentions\.\d+)\.(to_q|to_k|to_v|to_out)", r"\1.attn.\2", key)
        for pattern, repl in _RENAMES:
            key = re.sub(pattern, repl, key)
        out[key] = value
    for key in [k for k in out if ".to_q." in k]:
        prefix, suffix = key.split(".to_q.")
        q, k, v = (out.pop(f"{prefix}.{name}.{suffix}") for name in ("to_q", "to_k", "to_v"))
        if prefix.endswith("attn2"):  # cross-attention: q from the image, k and v from the text
            out[f"{prefix}.q.{suffix}"], out[f"{prefix}.kv.{suffix}"] = q, torch.cat([k, v])
        else:
            out[f"{prefix}.qkv.{suffix}"] = torch.cat([q, k, v])
    return out


# Every key of a diffusers U-Net config is read into UNetConfig (_MAPPED), has no effect on the numbers
# (_INERT), or must hold the one value coursekit implements (_REQUIRED); see ``check_config_keys``.
_MAPPED = {"in_channels", "out_channels", "block_out_channels", "layers_per_block", "norm_num_groups", "norm_eps",
           "flip_sin_to_cos", "freq_shift", "downsample_padding", "dropout", "down_block_types", "up_block_types",
           "attention_head_dim"}
_INERT = {"sample_size", "num_train_timesteps"}  # nominal size and step count: the network does not read them
_REQUIRED = dict(act_fn="silu", time_embedding_type="positional", time_embedding_dim=None, class_embed_type=None,
                 num_class_embeds=None, center_input_sample=False, mid_block_scale_factor=1)
_MAPPED_2D = _MAPPED | {"add_attention"}
# with scale_shift, diffusers' middle attention has no GroupNorm: a quirk coursekit does not copy
_REQUIRED_2D = {**_REQUIRED, "resnet_time_scale_shift": "default", "downsample_type": "conv", "upsample_type": "conv",
                "attn_norm_num_groups": None, "mid_block_type": "UNetMidBlock2D"}
_MAPPED_CONDITION = _MAPPED | {"cross_attention_dim", "use_linear_projection", "num_attention_heads",
                               "resnet_time_scale_shift", "upcast_attention"}
_INERT_CONDITION = _INERT | {"addition_embed_type_num_heads"}  # only read with addition_embed_type
_REQUIRED_CONDITION = {
    **_REQUIRED, "mid_block_type": "UNetMidBlock2DCrossAttn", "transformer_layers_per_block": 1,
    "reverse_transformer_layers_per_block": None, "only_cross_attention": False, "dual_cross_attention": False,
    "addition_embed_type": None, "addition_time_embed_dim": None, "encoder_hid_dim": None,
    "encoder_hid_dim_type": None, "time_cond_proj_dim": None, "time_embedding_act_fn": None, "timestep_post_act": None,
    "conv_in_kernel": 3, "conv_out_kernel": 3, "resnet_skip_time_act": False, "resnet_out_scale_factor": 1.0,
    "attention_type": "default", "projection_class_embeddings_input_dim": None, "cross_attention_norm": None,
    "mid_block_only_cross_attention": None, "class_embeddings_concat": False,
}


def config_from_diffusers(config, defaults: dict | None = None) -> UNetConfig:
    """The UNetConfig of a diffusers ``UNet2DModel`` or ``UNet2DConditionModel`` config. Every key is
    implemented or refused with a ValueError naming it; ``defaults`` (the diffusers class's own) lets a key
    this loader does not know through when it holds its default."""
    c = dict(config)
    conditional = "cross_attention_dim" in c
    if conditional:
        check_config_keys(c, "coursekit's U-Net", mapped=_MAPPED_CONDITION, required=_REQUIRED_CONDITION,
                          inert=_INERT_CONDITION, defaults=defaults)
    else:
        check_config_keys(c, "coursekit's U-Net", mapped=_MAPPED_2D, required=_REQUIRED_2D, inert=_INERT,
                          defaults=defaults)
    down, up = list(c["down_block_types"]), list(c["up_block_types"])
    attn_down, attn_up = ("CrossAttnDownBlock2D", "CrossAttnUpBlock2D") if conditional else ("AttnDownBlock2D", "AttnUpBlock2D")
    attention = tuple(b == attn_down for b in down)
    if any(b not in (attn_down, "DownBlock2D") for b in down):
        raise ValueError(f"config.down_block_types must use {attn_down} and DownBlock2D only, got {down}")
    if up != [attn_up if a else "UpBlock2D" for a in reversed(attention)]:
        raise ValueError(f"config.up_block_types must mirror the down blocks, got {up}")
    ch = tuple(c["block_out_channels"])
    common = dict(
        in_channels=c["in_channels"], out_channels=c["out_channels"], channels=ch, attention=attention,
        layers_per_level=c["layers_per_block"], norm_groups=c["norm_num_groups"], norm_eps=c["norm_eps"],
        flip_sin_to_cos=c["flip_sin_to_cos"], freq_shift=c["freq_shift"],
        downsample_padding=c["downsample_padding"], dropout=c["dropout"],
    )
    if not conditional:
        head_dim = c["attention_head_dim"]
        heads = tuple(1 if head_dim is None else w // head_dim for w in ch)
        return UNetConfig(**common, heads=heads, mid_attention=c["add_attention"], time_norm="add")
    heads = c.get("num_attention_heads") or c["attention_head_dim"]  # diffusers' legacy name for the head count
    heads = tuple(heads) if isinstance(heads, (list, tuple)) else (heads,) * len(ch)
    if not isinstance(c["cross_attention_dim"], int):
        raise ValueError(f"config.cross_attention_dim must be one int, got {c['cross_attention_dim']}")
    if c["resnet_time_scale_shift"] not in ("default", "scale_shift"):
        raise ValueError(f"config.resnet_time_scale_shift must be 'default' or 'scale_shift', "
                         f"got {c['resnet_time_scale_shift']!r}")
    return UNetConfig(**common, heads=heads, transformer=True, context_dim=c["cross_attention_dim"],
                      linear_projection=c["use_linear_projection"], upcast_attention=bool(c["upcast_attention"]),
                      time_norm={"default": "add", "scale_shift": "scale_shift"}[c["resnet_time_scale_shift"]])


def diffusers_unet(cfg: UNetConfig):
    """A randomly initialised diffusers model with the same architecture (``UNet2DModel``, or
    ``UNet2DConditionModel`` for transformer configs): the reference for parity tests and benchmarks."""
    from diffusers import UNet2DConditionModel, UNet2DModel

    attn_levels = [i for i, a in enumerate(cfg.attention) if a] + ([len(cfg.channels) - 1] if cfg.mid_attention else [])
    common = dict(
        in_channels=cfg.in_channels, out_channels=cfg.out_channels, block_out_channels=cfg.channels,
        layers_per_block=cfg.layers_per_level, norm_num_groups=cfg.norm_groups, norm_eps=cfg.norm_eps,
        flip_sin_to_cos=cfg.flip_sin_to_cos, freq_shift=cfg.freq_shift, downsample_padding=cfg.downsample_padding,
        dropout=cfg.dropout, resnet_time_scale_shift={"add": "default", "scale_shift": "scale_shift"}[cfg.time_norm],
    )
    if not cfg.transformer:
        if cfg.time_norm != "add":
            raise ValueError("cfg.time_norm must be 'add' for a diffusers UNet2DModel twin (see config_from_diffusers)")
        head_dims = {cfg.channels[i] // cfg.heads[i] for i in attn_levels}
        if len(head_dims) > 1:
            raise ValueError(f"cfg.heads must give one head width at every attention level, got {cfg.heads}")
        single = all(cfg.heads[i] == 1 for i in attn_levels)
        return UNet2DModel(
            **common, attention_head_dim=None if single else head_dims.pop(), add_attention=cfg.mid_attention,
            down_block_types=["AttnDownBlock2D" if a else "DownBlock2D" for a in cfg.attention],
            up_block_types=["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.attention)],
        )
    if cfg.context_dim is None or not cfg.mid_attention:
        raise ValueError("cfg must have context_dim and mid_attention for a diffusers UNet2DConditionModel twin")
    return UNet2DConditionModel(
        **common, cross_attention_dim=cfg.context_dim, attention_head_dim=cfg.heads,
        use_linear_projection=cfg.linear_projection, upcast_attention=cfg.upcast_attention,
        down_block_types=["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in cfg.attention],
        up_block_types=["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.attention)],
    )


def from_diffusers(model, copy: bool = True) -> UNet:
    """A coursekit UNet with the weights of a diffusers ``UNet2DModel`` or ``UNet2DConditionModel``;
    every tensor is checked for shape and every one is used (nanoGPT's ``from_pretrained`` idea). The U-Net is
    built without initialising weights it would overwrite (Stable Diffusion's has 860M); ``copy=False`` shares
    the model's tensors (q, k, v excepted, which coursekit stores fused) instead of copying them, for a caller
    that drops ``model`` afterwards."""
    cfg = config_from_diffusers(model.config, init_defaults(type(model)))
    with torch.device("meta"):
        ours = UNet(cfg)
    weights = convert_diffusers_state_dict(model.state_dict(), cfg.transformer)
    expected = ours.state_dict()
    missing, unexpected = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ValueError(f"model's weights do not map onto the U-Net: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for key, value in weights.items():
        if value.shape != expected[key].shape:
            raise ValueError(f"model's {key} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}")
    ours.load_state_dict({k: v.clone() if copy else v for k, v in weights.items()}, assign=True)
    return ours
