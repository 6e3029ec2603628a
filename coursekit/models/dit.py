"""DiT: a Vision Transformer over latent patches, conditioned by adaptive layer norm.

Peebles & Xie, "Scalable Diffusion Models with Transformers", ICCV 2023. Patchify (sec. 3.2),
N transformer blocks, then a linear decoder back to patches. The paper compares four ways of
feeding the timestep t and the class c to the blocks (Fig. 3, Fig. 5): in-context tokens,
cross-attention, adaptive layer norm (adaLN) and adaLN-Zero, whose zero-initialised gates make every
block start as the identity; ``DiTConfig.conditioning`` switches between them. The sizes of
Table 1 are the factories ``dit_s2`` .. ``dit_xl2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .._checks import (check_choice, check_config_keys, check_float, check_index, check_int, check_tensor,
                       check_timesteps, init_defaults)
from .layers import Attention, TimestepMLP, config_repr, modulate, unpatchify
from .text import WIDTH as TEXT_WIDTH

CONDITIONING = ("adaln-zero", "adaln", "cross-attention", "in-context")


@dataclass(frozen=True)
class DiTConfig:
    """input_size: latent side (32 for 256x256 images through SD's VAE); patch_size p gives
    (input_size / p)^2 tokens. The condition is a class label (``num_classes``; a null class is added
    when ``class_dropout`` > 0, for classifier-free guidance), or a vector of width ``cond_dim``
    (e.g. a pooled text embedding), or nothing. ``freq_shift``: 0 is the official DiT timestep
    embedding, 1 is diffusers' ``DiTTransformer2DModel`` (see ``timestep_embedding``).
    ``mlp_norm_eps``: the official code uses 1e-6, diffusers its ``norm_eps`` (1e-5).
    ``context_dim``: with it, every block also cross-attends to ``context`` tokens of that width
    (a caption's per-token features) between self-attention and the MLP, as PixArt-alpha does
    (Chen et al., ICLR 2024, sec. 2.3), so each object's words can reach the patches that draw it;
    the condition vector still drives adaLN."""

    input_size: int = 32
    patch_size: int = 2
    in_channels: int = 4
    out_channels: int = 4
    hidden: int = 384
    depth: int = 12
    heads: int = 6
    mlp_ratio: float = 4.0
    num_classes: int | None = 1000
    class_dropout: float = 0.1
    cond_dim: int | None = None
    conditioning: str = "adaln-zero"
    freq_shift: float = 0.0
    mlp_norm_eps: float = 1e-6
    context_dim: int | None = None

    def __post_init__(self):
        for name in ("input_size", "patch_size", "in_channels", "out_channels", "hidden", "depth", "heads"):
            check_int(name, getattr(self, name), 1)
        if self.input_size % self.patch_size:
            raise ValueError(f"patch_size must divide input_size={self.input_size}, got {self.patch_size}")
        if self.hidden % self.heads:
            raise ValueError(f"heads must divide hidden={self.hidden}, got {self.heads}")
        if self.hidden % 4:
            raise ValueError(f"hidden must be a multiple of 4 (2-D sin-cos positions), got {self.hidden}")
        check_float("mlp_ratio", self.mlp_ratio, 0.0)
        check_float("class_dropout", self.class_dropout, 0.0, 1.0)
        check_float("mlp_norm_eps", self.mlp_norm_eps, 0.0)
        if self.num_classes is not None and self.cond_dim is not None:
            raise ValueError("num_classes and cond_dim are exclusive: condition on a class or on a vector")
        if self.num_classes is not None:
            check_int("num_classes", self.num_classes, 1)
        if self.cond_dim is not None:
            check_int("cond_dim", self.cond_dim, 1)
        check_choice("conditioning", self.conditioning, CONDITIONING)
        if self.context_dim is not None:
            check_int("context_dim", self.context_dim, 1)
            if self.conditioning == "cross-attention":
                raise ValueError("context_dim needs an adaLN or in-context conditioning: the cross-attention "
                                 "variant already attends to its condition tokens")

    @property
    def tokens(self) -> int:
        return (self.input_size // self.patch_size) ** 2


def sincos_2d(dim: int, grid: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding (MAE / DiT), (grid*grid, dim): the first half of the
    features encodes the column, the second half the row, each with 1-D Transformer sinusoids."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))  # (dim/4,)
    pos = torch.arange(grid, dtype=torch.float64)
    col, row = pos.repeat(grid), pos.repeat_interleave(grid)  # token k sits at row k // grid, column k % grid

    def one_d(p: torch.Tensor) -> torch.Tensor:
        angles = p[:, None] * omega[None]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)

    return torch.cat([one_d(col), one_d(row)], dim=1).float()


class DiTBlock(nn.Module):
    """Self-attention and MLP, each pre-normed and residual, with the condition fed in one of four ways."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        D, self.mode = cfg.hidden, cfg.conditioning
        adaptive = self.mode in ("adaln-zero", "adaln")
        self.norm1 = nn.LayerNorm(D, elementwise_affine=not adaptive, eps=1e-6)
        self.attn = Attention(D, cfg.heads)
        if self.mode == "cross-attention":  # attends to the two condition tokens [t, c]
            self.norm_cross, self.cross = nn.LayerNorm(D, eps=1e-6), Attention(D, cfg.heads, context_dim=D)
        if cfg.context_dim is not None:  # PixArt-alpha's text cross-attention (its output starts at zero)
            self.norm_text, self.text = nn.LayerNorm(D, eps=1e-6), Attention(D, cfg.heads, context_dim=cfg.context_dim)
        self.norm2 = nn.LayerNorm(D, elementwise_affine=not adaptive, eps=cfg.mlp_norm_eps)
        inner = int(D * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(D, inner), nn.GELU(approximate="tanh"), nn.Linear(inner, D))
        if adaptive:  # regress (shift, scale[, gate]) for both sub-layers from the condition vector
            self.ada = nn.Sequential(nn.SiLU(), nn.Linear(D, (6 if self.mode == "adaln-zero" else 4) * D))

    def forward(self, x: torch.Tensor, c: torch.Tensor, c_tokens: torch.Tensor,
                context: torch.Tensor | None = None) -> torch.Tensor:
        if self.mode == "adaln-zero":
            shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=1)  # 6 x (B, D)
            x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1))
            x = self.attend_text(x, context)
            return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))
        if self.mode == "adaln":
            shift1, scale1, shift2, scale2 = self.ada(c).chunk(4, dim=1)
            x = x + self.attn(modulate(self.norm1(x), shift1, scale1))
            x = self.attend_text(x, context)
            return x + self.mlp(modulate(self.norm2(x), shift2, scale2))
        x = x + self.attn(self.norm1(x))  # (B, T, D); in-context: T includes the 2 condition tokens
        if self.mode == "cross-attention":
            x = x + self.cross(self.norm_cross(x), c_tokens)
        x = self.attend_text(x, context)
        return x + self.mlp(self.norm2(x))

    def attend_text(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """x + CrossAttn(LN(x), text tokens) where the block has text cross-attention (B, T, D)."""
        return x if context is None else x + self.text(self.norm_text(x), context)


class DiT(nn.Module):
    """eps = dit(x_t, t, cond): the denoiser protocol. ``cond`` is (B,) class labels, (B, cond_dim)
    vectors, or None (the null class when the model has one; nothing for an unconditional model)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        if not isinstance(cfg, DiTConfig):
            raise ValueError(f"cfg must be a DiTConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        D, p = cfg.hidden, cfg.patch_size
        self.patch = nn.Conv2d(cfg.in_channels, D, p, stride=p)
        self.register_buffer("pos", sincos_2d(D, cfg.input_size // p)[None], persistent=False)  # (1, T, D)
        self.t_embed = TimestepMLP(256, D, flip_sin_to_cos=True, freq_shift=cfg.freq_shift)
        if cfg.num_classes is not None:
            self.y_embed = nn.Embedding(cfg.num_classes + (cfg.class_dropout > 0), D)
        elif cfg.cond_dim is not None:
            self.y_embed = nn.Linear(cfg.cond_dim, D)
        self.blocks = nn.ModuleList(DiTBlock(cfg) for _ in range(cfg.depth))
        adaptive = cfg.conditioning in ("adaln-zero", "adaln")
        self.norm_out = nn.LayerNorm(D, elementwise_affine=not adaptive, eps=1e-6)
        if adaptive:
            self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(D, 2 * D))
        self.out = nn.Linear(D, p * p * cfg.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """The official initialisation: Xavier-uniform linear layers with zero biases, N(0, 0.02) for
        the embeddings, and zeros for the output layer and, in adaLN-Zero, for every modulation layer
        (so each block starts as the identity: the "Zero")."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.xavier_uniform_(self.patch.weight.view(self.patch.weight.shape[0], -1))
        nn.init.zeros_(self.patch.bias)
        if hasattr(self, "y_embed"):
            nn.init.normal_(self.y_embed.weight, std=0.02)
        for layer in (self.t_embed.mlp[0], self.t_embed.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        if self.cfg.conditioning == "adaln-zero":
            for block in self.blocks:
                nn.init.zeros_(block.ada[1].weight)
                nn.init.zeros_(block.ada[1].bias)
        if hasattr(self, "ada_out"):
            nn.init.zeros_(self.ada_out[1].weight)
            nn.init.zeros_(self.ada_out[1].bias)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        if self.cfg.context_dim is not None:  # PixArt-alpha: the text attention's projection starts at 0
            for block in self.blocks:
                nn.init.zeros_(block.text.out.weight)
                nn.init.zeros_(block.text.out.bias)

    def embed_condition(self, t: torch.Tensor, cond) -> tuple[torch.Tensor, torch.Tensor]:
        """c = t_emb + y_emb (B, D), and the token pair [t_emb, y_emb] (B, 2, D) for the token variants."""
        cfg, B = self.cfg, t.shape[0]
        t_emb = self.t_embed(t)
        if cfg.num_classes is None and cfg.cond_dim is None:
            if cond is not None:
                raise ValueError("cond must be None for an unconditional DiT")
            y_emb = torch.zeros_like(t_emb)
        elif cfg.num_classes is not None:
            if cond is None:
                if cfg.class_dropout == 0:
                    raise ValueError("cond must be given: this DiT has no null class (class_dropout=0)")
                cond = torch.full((B,), cfg.num_classes, dtype=torch.long, device=t.device)
            check_tensor("cond", cond, shape=(B,), floating=False)
            check_index("cond", cond, self.y_embed.num_embeddings)
            y_emb = self.y_embed(cond)
        else:
            check_tensor("cond", cond, shape=(B, cfg.cond_dim), finite=False)
            y_emb = self.y_embed(cond.to(t_emb.dtype))
        return t_emb + y_emb, torch.stack([t_emb, y_emb], dim=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None, context: torch.Tensor | None = None) -> torch.Tensor:
        """``context``: (B, L, context_dim) text tokens, required by (and only for) a DiT with ``context_dim``."""
        cfg = self.cfg
        check_tensor("x", x, shape=(None, cfg.in_channels, cfg.input_size, cfg.input_size), finite=False)
        B = x.shape[0]
        t = check_timesteps("t", t, 2**62, batch=B).expand(B)
        if (cfg.context_dim is None) != (context is None):
            raise ValueError(f"context must be given (B, L, {cfg.context_dim}) tokens for a DiT with context_dim, "
                             "and None otherwise" if cfg.context_dim else "context must be None: this DiT has no "
                             "text cross-attention (context_dim=None)")
        if context is not None:
            check_tensor("context", context, shape=(B, None, cfg.context_dim), finite=False)
            context = context.to(x.dtype)
        c, c_tokens = self.embed_condition(t, cond)  # (B, D), (B, 2, D)
        h = self.patch(x).flatten(2).transpose(1, 2) + self.pos  # patchify: (B, T, D)
        if cfg.conditioning == "in-context":
            h = torch.cat([c_tokens, h], dim=1)  # (B, 2 + T, D)
        for block in self.blocks:
            h = block(h, c, c_tokens, context)
        if cfg.conditioning == "in-context":
            h = h[:, 2:]  # drop the condition tokens
        h = self.norm_out(h)
        if hasattr(self, "ada_out"):
            shift, scale = self.ada_out(c).chunk(2, dim=1)
            h = modulate(h, shift, scale)
        return unpatchify(self.out(h), cfg.patch_size, cfg.out_channels)  # (B, C_out, H, W)

    def extra_repr(self) -> str:
        return config_repr(self.cfg)



# --- the sizes of Table 1 -------------------------------------------------------------------------


TABLE_1 = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}  # depth, width, heads
DIT_SIZES = tuple(f"DiT-{size}/{patch}" for size in TABLE_1 for patch in (8, 4, 2))


def dit_size(name: str, **overrides) -> DiTConfig:
    """The config of a Table 1 model by its name in the paper, "DiT-S/8" .. "DiT-XL/2" (the number is the patch)."""
    check_choice("name", name, DIT_SIZES)
    size, patch = name[4:].split("/")
    depth, hidden, heads = TABLE_1[size]
    return DiTConfig(**{**dict(depth=depth, hidden=hidden, heads=heads, patch_size=int(patch)), **overrides})


def dit_s2(**overrides) -> DiTConfig:
    """DiT-S/2: depth 12, width 384, 6 heads, patch 2."""
    return dit_size("DiT-S/2", **overrides)


def dit_b2(**overrides) -> DiTConfig:
    """DiT-B/2: depth 12, width 768, 12 heads, patch 2."""
    return dit_size("DiT-B/2", **overrides)


def dit_l2(**overrides) -> DiTConfig:
    """DiT-L/2: depth 24, width 1024, 16 heads, patch 2."""
    return dit_size("DiT-L/2", **overrides)


def dit_xl2(**overrides) -> DiTConfig:
    """DiT-XL/2, the paper's best: depth 28, width 1152, 16 heads, patch 2."""
    return dit_size("DiT-XL/2", **overrides)


def dit_shapes(**overrides) -> DiTConfig:
    """The course's text-to-image DiT for 32x32 shapes images: width 256, depth 5, 4 heads, patch 2,
    adaLN-Zero on the pooled 128-wide caption vector; ``context_dim=128`` adds PixArt-alpha's
    cross-attention to the caption tokens."""
    return DiTConfig(**{**dict(input_size=32, patch_size=2, in_channels=3, out_channels=3, hidden=256, depth=5,
                               heads=4, num_classes=None, cond_dim=TEXT_WIDTH), **overrides})


# --- diffusers interop ----------------------------------------------------------------------------


def diffusers_dit(cfg: DiTConfig):
    """A randomly initialised diffusers ``DiTTransformer2DModel`` with the same architecture, with
    every block's copy of the condition embedder made equal (as in converted checkpoints)."""
    from diffusers import DiTTransformer2DModel

    if cfg.conditioning != "adaln-zero" or cfg.num_classes is None or cfg.class_dropout == 0 or cfg.mlp_ratio != 4:
        raise ValueError("cfg must be an adaLN-Zero, class-conditional DiT with a null class and mlp_ratio 4")
    if cfg.freq_shift != 1:
        raise ValueError("cfg.freq_shift must be 1: diffusers' DiT embeds timesteps with downscale_freq_shift=1")
    model = DiTTransformer2DModel(
        num_attention_heads=cfg.heads, attention_head_dim=cfg.hidden // cfg.heads, in_channels=cfg.in_channels,
        out_channels=cfg.out_channels, num_layers=cfg.depth, sample_size=cfg.input_size, patch_size=cfg.patch_size,
        num_embeds_ada_norm=cfg.num_classes, norm_eps=cfg.mlp_norm_eps,
    )
    first = model.transformer_blocks[0].norm1.emb.state_dict()
    for block in model.transformer_blocks[1:]:
        block.norm1.emb.load_state_dict(first)
    return model


# Every key of a diffusers DiT config is read into DiTConfig (_MAPPED), has no effect on the numbers (_INERT:
# adaLN-Zero has no GroupNorm; upcast_attention changes float16 rounding only, and coursekit's DiT is float32),
# or must hold the one value coursekit implements (_REQUIRED); see ``check_config_keys``.
_MAPPED = {"num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "num_layers", "sample_size",
           "patch_size", "num_embeds_ada_norm", "norm_eps"}
_INERT = {"norm_num_groups", "upcast_attention"}
_REQUIRED = dict(norm_type="ada_norm_zero", activation_fn="gelu-approximate", attention_bias=True,
                 norm_elementwise_affine=False, dropout=0.0)


def config_from_diffusers(config, defaults: dict | None = None) -> DiTConfig:
    """The DiTConfig of a diffusers ``DiTTransformer2DModel`` config; every key is implemented or refused
    (``defaults``, the diffusers class's own, let a key this loader does not know through at its default)."""
    c = dict(config)
    check_config_keys(c, "coursekit's DiT", mapped=_MAPPED, required=_REQUIRED, inert=_INERT, defaults=defaults)
    return DiTConfig(
        input_size=c["sample_size"], patch_size=c["patch_size"], in_channels=c["in_channels"],
        out_channels=c["out_channels"] or c["in_channels"], hidden=c["num_attention_heads"] * c["attention_head_dim"],
        depth=c["num_layers"], heads=c["num_attention_heads"], num_classes=c["num_embeds_ada_norm"],
        class_dropout=0.1, freq_shift=1.0, mlp_norm_eps=c["norm_eps"],
    )


def from_diffusers(model) -> DiT:
    """A coursekit DiT with the weights of a diffusers ``DiTTransformer2DModel``. diffusers keeps one
    copy of the timestep/label embedder per block; they must be equal, and one copy is used."""
    cfg = config_from_diffusers(model.config, init_defaults(type(model)))
    sd = model.state_dict()
    emb = {k.split("norm1.emb.", 1)[1]: v for k, v in sd.items() if k.startswith("transformer_blocks.0.norm1.emb.")}
    for i in range(1, cfg.depth):
        for name, value in emb.items():
            if not torch.equal(sd[f"transformer_blocks.{i}.norm1.emb.{name}"], value):
                raise ValueError(f"model's blocks carry different condition embedders (block {i}: {name})")
    weights = {
        "patch.weight": sd["pos_embed.proj.weight"], "patch.bias": sd["pos_embed.proj.bias"],
        "t_embed.mlp.0.weight": emb["timestep_embedder.linear_1.weight"],
        "t_embed.mlp.0.bias": emb["timestep_embedder.linear_1.bias"],
        "t_embed.mlp.2.weight": emb["timestep_embedder.linear_2.weight"],
        "t_embed.mlp.2.bias": emb["timestep_embedder.linear_2.bias"],
        "y_embed.weight": emb["class_embedder.embedding_table.weight"],
        "ada_out.1.weight": sd["proj_out_1.weight"], "ada_out.1.bias": sd["proj_out_1.bias"],
        "out.weight": sd["proj_out_2.weight"], "out.bias": sd["proj_out_2.bias"],
    }
    for i in range(cfg.depth):
        src = f"transformer_blocks.{i}."
        for kind in ("weight", "bias"):
            weights[f"blocks.{i}.ada.1.{kind}"] = sd[f"{src}norm1.linear.{kind}"]
            weights[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat([sd[f"{src}attn1.to_{n}.{kind}"] for n in "qkv"])
            weights[f"blocks.{i}.attn.out.{kind}"] = sd[f"{src}attn1.to_out.0.{kind}"]
            weights[f"blocks.{i}.mlp.0.{kind}"] = sd[f"{src}ff.net.0.proj.{kind}"]
            weights[f"blocks.{i}.mlp.2.{kind}"] = sd[f"{src}ff.net.2.{kind}"]
    ours = DiT(cfg)
    expected = ours.state_dict()
    if set(weights) != set(expected):
        raise ValueError(f"model's weights do not map onto the DiT: {sorted(set(weights) ^ set(expected))[:5]}")
    for key, value in weights.items():
        if value.shape != expected[key].shape:
            raise ValueError(f"model's {key} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}")
    ours.load_state_dict(weights)
    return ours


def gflops_table(image_size: int = 256) -> dict[str, float]:
    """GMACs per forward pass of every Table 1 size at ``image_size`` (latents of image_size / 8), the
    quantity the paper reports as "Gflops" (Table 4: S/2 6.06, B/2 23.01, L/2 80.70, XL/2 118.62)."""
    from .counting import count_macs

    latent = image_size // 8
    out = {}
    for name in DIT_SIZES:
        with torch.device("meta"):
            model = DiT(dit_size(name, input_size=latent))
        x = torch.zeros(1, 4, latent, latent, device="meta")
        out[name] = count_macs(model, x, torch.zeros(1, dtype=torch.long, device="meta"), torch.zeros(
            1, dtype=torch.long, device="meta")) / 1e9
    return out


