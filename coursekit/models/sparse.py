"""Spatially sparse inference for edits: recompute only where the image changed (SIGE).

Li, Lin, Meng, Ermon, Han & Zhu, "Efficient Spatially Sparse Inference for Conditional GANs and Diffusion
Models", NeurIPS 2022 (``lmxyy/sige``). An edit changes a small part of an image, so most of a network's
activations are the same as on the original. Run the network once on the original and keep every layer's
output (the cache); on the edited image, compute each layer only on the *active blocks*, the tiles of its
output where the edit reaches, and write them into a copy of the cached output:

1. difference mask: a pixel is active where |original - edited| > threshold in any channel, dilated by
   ``dilate`` pixels (the paper: 0.01 on [-1, 1] images, 5 pixels at 256x256);
2. one mask per resolution of the U-Net: bilinear halving, re-binarised at min(0.3, max - 1e-3), dilated by one;
3. each layer's output is cut into ``block`` x ``block`` tiles; a tile is active if its mask has any pixel;
4. gather: the input window each active tile needs (the tile plus the convolution's halo), stacked on the
   batch axis; 5. convolve with padding 0 (the halo is in the window); 6. scatter into the cached output.
7. GroupNorm uses the statistics the original image gave (frozen): the one approximation, besides the
   tiles' neighbours coming from the cache, that makes the result differ from a dense pass on the edit.

Self-attention computes queries for the active pixels only, against keys and values of all pixels: the
cached ones outside, recomputed inside (exact, since outside the input equals the original's). In diffusion
the original goes through the same steps with the same noise (``sparse_sdedit``), one cache per network call.
The sparse pass runs ``UNet.forward`` itself with each block's forward swapped for its sparse version, so
the network's wiring is written once. The engine reads the network's internals, so it lives beside the models
(SIGE keeps its engine apart from its applications); ``editing.sparse`` holds the method, sparse SDEdit. It runs any
coursekit ``UNet``: the course's pixel U-Nets and Stable Diffusion's (``SpatialTransformer`` blocks: self- and
cross-attention, LayerNorm, GEGLU feed-forward; the 1x1 or linear projections), as ``coursekit bench sparse-sd``
measures.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_choice, check_float, check_int, check_same_shape, check_tensor
from .unet import AttentionBlock, Downsample, ResBlock, SpatialTransformer, UNet, Upsample


# --- 1-3: where the edit is, at every resolution ------------------------------------------------------------


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """(H, W) bool grown by ``radius`` pixels (a square max-pool)."""
    if radius == 0:
        return mask
    return F.max_pool2d(mask[None, None].float(), 2 * radius + 1, stride=1, padding=radius)[0, 0] > 0


def difference_mask(original: torch.Tensor, edited: torch.Tensor, threshold: float = 0.01, dilate: int = 1) -> torch.Tensor:
    """(H, W) bool: where any image of the batch and any channel changed by more than ``threshold``, grown by
    ``dilate`` pixels (SIGE's eps and ``mask_dilate_radius``). One mask serves the whole batch."""
    check_tensor("original", original, ndim=4)
    check_tensor("edited", edited, ndim=4)
    check_same_shape("edited", edited, "original", original)
    check_float("threshold", threshold, 0.0)
    check_int("dilate", dilate, 0)
    return _dilate(((original - edited).abs() > threshold).any(dim=1).any(dim=0), dilate)


def pyramid(mask: torch.Tensor, levels: int) -> dict[int, torch.Tensor]:
    """The mask at the full resolution and ``levels - 1`` halvings, keyed by height: bilinear downsampling,
    re-binarised at min(0.3, max - 1e-3) and dilated by one pixel at each level (SIGE's ``utils.py``). An empty
    mask stays empty at every level (its max is 0, so that threshold would let every pixel through)."""
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.ndim != 2:
        raise ValueError(f"mask must be a bool tensor (H, W), got {getattr(mask, 'dtype', type(mask).__name__)} "
                         f"{tuple(getattr(mask, 'shape', ()))}")
    if mask.shape[0] % 2 ** (levels - 1) or mask.shape[1] % 2 ** (levels - 1):
        raise ValueError(f"mask's height and width must be multiples of {2 ** (levels - 1)}, got {tuple(mask.shape)}")
    out, m = {mask.shape[0]: mask}, mask.float()
    for _ in range(levels - 1):
        m = F.interpolate(m[None, None], scale_factor=0.5, mode="bilinear", align_corners=False)[0, 0]
        peak = m.max().item()
        m = _dilate(m > min(0.3, peak - 1e-3), 1).float() if peak > 0 else torch.zeros_like(m)
        out[m.shape[0]] = m > 0
    return out


@dataclass(frozen=True)
class Tiles:
    """The active ``size`` x ``size`` tiles of one resolution (height x width): their top-left corners."""

    size: int
    height: int
    width: int
    ys: torch.Tensor  # (n,) long
    xs: torch.Tensor  # (n,) long

    @classmethod
    def from_mask(cls, mask: torch.Tensor, size: int) -> Tiles:
        H, W = mask.shape
        active = F.max_pool2d(mask[None, None].float(), size)[0, 0] > 0  # (H/size, W/size)
        ys, xs = active.nonzero(as_tuple=True)
        return cls(size, H, W, ys * size, xs * size)

    def __len__(self) -> int:
        return len(self.ys)

    @property
    def fraction(self) -> float:
        """The share of the resolution's pixels the active tiles cover."""
        return len(self) * self.size**2 / (self.height * self.width)

    def pixels(self) -> torch.Tensor:
        """Flat indices (n * size * size,) of the active tiles' pixels in an H x W map."""
        r = torch.arange(self.size, device=self.ys.device)
        rows, cols = self.ys[:, None, None] + r[:, None], self.xs[:, None, None] + r
        return (rows * self.width + cols).flatten()

    def to(self, device) -> Tiles:
        return dataclasses.replace(self, ys=self.ys.to(device), xs=self.xs.to(device))


def tile_size(height: int, width: int, block: int) -> int:
    """The tile side at one resolution: the largest side up to ``block`` and a quarter of the height that divides
    both sides, even if one is (upsampling writes tiles of even side: each covers whole low-resolution pixels)."""
    sides = [s for s in range(max(1, min(block, height // 4)), 0, -1) if height % s == 0 and width % s == 0]
    return next((s for s in sides if s % 2 == 0), sides[0])


def active_tiles(mask: torch.Tensor, resolutions: int, block: int = 8) -> dict[int, Tiles]:
    """The active tiles at each of the network's ``resolutions`` (halvings of the mask's size), keyed by
    height, with sides from ``tile_size``."""
    check_int("block", block, 2)
    maps = pyramid(mask, resolutions)
    return {h: Tiles.from_mask(m, tile_size(*m.shape, block)) for h, m in maps.items()}


# --- 4-6: gather, convolve, scatter ----------------------------------------------------------------------


def _gather(x: torch.Tensor, tiles: Tiles, start: int, stride: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows of ``x`` (B, C, H, W): for the tile at (y, x), rows and columns stride * y + start + [0, length).
    Returns (B, n, C, length, length) with zeros outside the map, and the in-map mask (n, 1, length, length)."""
    H, W = x.shape[-2:]
    r = torch.arange(length, device=x.device)
    rows, cols = stride * tiles.ys[:, None] + start + r, stride * tiles.xs[:, None] + start + r  # (n, length)
    valid = ((rows >= 0) & (rows < H))[:, :, None] & ((cols >= 0) & (cols < W))[:, None, :]  # (n, L, L)
    windows = x[:, :, rows.clamp(0, H - 1)[:, :, None], cols.clamp(0, W - 1)[:, None, :]]  # (B, C, n, L, L)
    valid = valid[:, None].to(x.dtype)
    return windows.transpose(1, 2) * valid, valid


def _scatter(cached: torch.Tensor, blocks: torch.Tensor, tiles: Tiles) -> torch.Tensor:
    """A copy of the cached map (B, C, H, W) with the tiles replaced by ``blocks`` (B * n, C, size, size)."""
    out = cached.clone()
    B, C = cached.shape[:2]
    r = torch.arange(tiles.size, device=cached.device)
    rows, cols = tiles.ys[:, None] + r, tiles.xs[:, None] + r  # (n, size)
    blocks = blocks.reshape(B, len(tiles), C, tiles.size, tiles.size).transpose(1, 2)  # (B, C, n, s, s)
    out[:, :, rows[:, :, None], cols[:, None, :]] = blocks
    return out


def _conv(conv: nn.Conv2d, windows: torch.Tensor) -> torch.Tensor:
    """``conv`` on gathered windows (B, n, C, L, L) with padding 0: (B * n, C_out, l, l).

    On the CPU, few output pixels over many channels go through one matrix product over every window's patches
    (im2col) instead: there oneDNN's convolution was the slower, measured on the 2-core EPYC for 3x3 convolutions
    (time of the convolution over the product): 1280 channels, 64 output pixels 2.7x, 256 pixels 1.9x, 1024 pixels
    1.0x; 640 channels 1.35x, 1.3x, 1.0x; 320 channels at most 1.1x; 256 channels and fewer, or 1,600 pixels and
    more, at most 1.0x (down to 0.14x for 64 channels). Hence the rule: at least 512 channels and at most 512 output
    pixels. (The U-Nets' convolutions are square, ungrouped and undilated, as the gathered windows assume.)"""
    x = windows.flatten(0, 1)
    N, C, L, _ = x.shape
    k, s = conv.kernel_size[0], conv.stride[0]
    l = (L - k) // s + 1
    if x.device.type != "cpu" or C < 512 or N * l * l > 512:
        return F.conv2d(x, conv.weight, conv.bias, conv.stride, 0)
    patches = F.unfold(x, k, stride=s).transpose(1, 2).reshape(N * l * l, C * k * k)
    weight = conv.weight.reshape(conv.out_channels, -1)
    out = patches @ weight.T if conv.bias is None else torch.addmm(conv.bias, patches, weight.T)
    return out.reshape(N, l, l, -1).permute(0, 3, 1, 2)


@contextlib.contextmanager
def products_on_small_maps(unet: nn.Module):
    """Within the block, every convolution of ``unet`` (the dense forward) chooses its kernel by ``_conv``'s rule,
    on its zero-padded input: the dense baseline with the sparse pass's kernels, so that a speed-up measured against
    it is the tiles' alone (``coursekit bench sparse-sd`` reports both baselines)."""
    convs = [m for m in unet.modules() if isinstance(m, nn.Conv2d) and m.padding_mode == "zeros" and m.groups == 1
             and m.dilation == (1, 1)]

    def forward(conv, x, weight, bias):
        p = conv.padding[0]
        return _conv(conv, F.pad(x, (p, p, p, p))[:, None])

    try:
        for conv in convs:
            conv._conv_forward = forward.__get__(conv)
        yield
    finally:
        for conv in convs:
            del conv._conv_forward


def _affine(x: torch.Tensor, scale_shift: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Frozen GroupNorm, x * scale + shift per sample and channel, on windows (B, n, C, L, L), maps (B, C, H, W)
    or tokens (B, C, N); ``scale_shift`` from ``frozen_norm``."""
    scale, shift = scale_shift  # (B, C)
    index = {5: (slice(None), None, slice(None), None, None), 4: (..., None, None), 3: (..., None)}[x.ndim]
    return x * scale[index] + shift[index]


def frozen_norm(norm: nn.GroupNorm, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """GroupNorm on ``x`` (B, C, ...) written as a per-sample, per-channel affine map: (scale, shift), each (B, C)."""
    B, C = x.shape[:2]
    var, mean = torch.var_mean(x.reshape(B, norm.num_groups, -1), dim=-1, unbiased=False)  # (B, G)
    rstd = torch.rsqrt(var + norm.eps).repeat_interleave(C // norm.num_groups, dim=1)  # (B, C)
    scale = rstd * norm.weight
    return scale, norm.bias - mean.repeat_interleave(C // norm.num_groups, dim=1) * scale


# --- the sparse versions of the U-Net's blocks ------------------------------------------------------------


class SparseUNet:
    """SIGE for a coursekit ``UNet``: ``record`` runs it densely and keeps the cache; ``sparse`` runs it on an
    edited input given the cache and the active tiles; ``dense_frozen`` is the dense pass with the cached
    GroupNorm statistics (what ``sparse(..., norms="frozen")`` equals when every tile is active)."""

    BLOCKS = (ResBlock, AttentionBlock, SpatialTransformer, Downsample, Upsample)

    def __init__(self, unet: UNet, block: int = 8):
        if not isinstance(unet, UNet):
            raise ValueError(f"unet must be a coursekit UNet, got {type(unet).__name__}")
        self.unet, self.block = unet, check_int("block", block, 2)
        self.levels = len(unet.cfg.channels)

    def tiles(self, mask: torch.Tensor) -> dict[int, Tiles]:
        """The active tiles of a difference mask (H, W) at each of the U-Net's resolutions (on the CPU; ``sparse``
        moves them to the input's device)."""
        return active_tiles(mask.cpu(), self.levels, self.block)

    @torch.no_grad()
    def record(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> tuple[torch.Tensor, dict]:
        """The dense output on the original input and the cache: every block's output, the self-attention keys
        and values, every GroupNorm's statistics as (scale, shift)."""
        cache, hooks = {}, []

        def keep(module, args, out):
            cache[module] = out

        def norm(module, args, out):
            cache[module] = frozen_norm(module, args[0])

        def keys_values(module, args, out):
            cache[module] = module.qkv(args[0]).chunk(3, dim=-1)[1:]

        unet = self.unet
        for m in unet.modules():
            if isinstance(m, self.BLOCKS):
                hooks.append(m.register_forward_hook(keep))
            if isinstance(m, ResBlock):
                hooks.append(m.conv1.register_forward_hook(keep))
            if isinstance(m, nn.GroupNorm):
                hooks.append(m.register_forward_hook(norm))
            if isinstance(m, (AttentionBlock, SpatialTransformer)):
                attn = m.attn if isinstance(m, AttentionBlock) else m.block.attn1
                hooks.append(attn.register_forward_hook(keys_values))
        for m in (unet.conv_in, unet.conv_out):
            hooks.append(m.register_forward_hook(keep))
        try:
            out = unet(x, t, cond)
        finally:
            for h in hooks:
                h.remove()
        return out, cache

    @contextlib.contextmanager
    def _swapped(self, forwards: dict):
        """Run with each module's forward replaced (restored afterwards)."""
        for m, f in forwards.items():
            m.forward = f
        try:
            yield
        finally:
            for m in forwards:
                del m.forward

    def _frozen(self, cache: dict) -> dict:
        return {m: (lambda x, m=m: _affine(x, cache[m])) for m in self.unet.modules() if isinstance(m, nn.GroupNorm)}

    @torch.no_grad()
    def dense_frozen(self, x: torch.Tensor, t: torch.Tensor, cond, cache: dict) -> torch.Tensor:
        """The dense U-Net on ``x`` with every GroupNorm using the statistics of the recorded input."""
        with self._swapped(self._frozen(cache)):
            return self.unet(x, t, cond)

    @torch.no_grad()
    def sparse(self, x: torch.Tensor, t: torch.Tensor, cond, cache: dict, tiles: dict[int, Tiles],
               norms: str = "frozen") -> torch.Tensor:
        """The U-Net on the edited ``x``, computed on the active ``tiles`` only, the rest taken from ``cache``.

        ``norms="frozen"``: GroupNorm with the original's statistics (SIGE); ``"fresh"``: statistics of each
        map as it now is (cached outside the tiles, recomputed inside), one memory-bound pass per norm, no
        multiply-accumulates; then an all-active pass equals the plain dense network."""
        check_choice("norms", norms, ("frozen", "fresh"))
        H, W = x.shape[-2:]
        if not isinstance(tiles, dict) or H not in tiles or (tiles[H].height, tiles[H].width) != (H, W):
            raise ValueError(f"tiles must be SparseUNet.tiles of a mask of x's size {H}x{W}")
        if not isinstance(cache, dict) or self.unet.conv_out not in cache:
            raise ValueError("cache must be what record returned for this U-Net")
        step = _SparsePass(cache, {h: T.to(x.device) for h, T in tiles.items()}, norms == "fresh")
        unet = self.unet
        forwards = {m: (lambda *args, m=m: step(m, *args)) for m in unet.modules() if isinstance(m, self.BLOCKS)}
        forwards.update({unet.conv_in: lambda x: step(unet.conv_in, x), unet.conv_out: lambda x: step(unet.conv_out, x)})
        if norms == "frozen":  # norm_out, which UNet.forward calls on the full map
            forwards[unet.norm_out] = lambda x: _affine(x, cache[unet.norm_out])
        with self._swapped(forwards):
            return unet(x, t, cond)


class _SparsePass:
    """One sparse forward: each block's sparse version, reading the cache and the active tiles."""

    def __init__(self, cache: dict, tiles: dict[int, Tiles], fresh: bool):
        self.cache, self.tiles, self.fresh = cache, tiles, fresh
        self.run = {ResBlock: self.res, AttentionBlock: self.attention, SpatialTransformer: self.transformer,
                    Downsample: self.down, Upsample: self.up, nn.Conv2d: self.conv3x3}

    def __call__(self, module: nn.Module, x: torch.Tensor, *args):
        T = self.tiles[x.shape[-2] // 2 if isinstance(module, Downsample) else
                       x.shape[-2] * 2 if isinstance(module, Upsample) else x.shape[-2]]
        if not len(T):
            return self.cache[module]
        return self.run[type(module)](module, T, x, *args)

    def stats(self, norm: nn.GroupNorm, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """GroupNorm's (scale, shift): the original's, or those of the full map ``x`` now."""
        return frozen_norm(norm, x) if self.fresh else self.cache[norm]

    def conv3x3(self, conv: nn.Conv2d, T: Tiles, x):
        windows, _ = _gather(x, T, -1, 1, T.size + 2)
        return _scatter(self.cache[conv], _conv(conv, windows), T)

    def res(self, block: ResBlock, T: Tiles, x, emb):
        windows, valid = _gather(x, T, -1, 1, T.size + 2)
        h = F.silu(_affine(windows, self.stats(block.norm1, x))) * valid  # zero padding after the activation
        h = _scatter(self.cache[block.conv1], _conv(block.conv1, h), T)
        e = block.emb(emb)  # (B, C_out)
        windows, valid = _gather(h, T, -1, 1, T.size + 2)
        if block.scale_shift:
            scale, shift = (z[:, None, :, None, None] for z in e.chunk(2, dim=1))
            windows = _affine(windows, self.stats(block.norm2, h)) * (1 + scale) + shift
        else:
            stats = self.stats(block.norm2, h + e[:, :, None, None]) if self.fresh else self.cache[block.norm2]
            windows = _affine(windows + e[:, None, :, None, None], stats)
        h = _conv(block.conv2, block.dropout(F.silu(windows)) * valid)
        inside, _ = _gather(x, T, 0, 1, T.size)
        return _scatter(self.cache[block], block.skip(inside.flatten(0, 1)) + h, T)

    def down(self, down: Downsample, T: Tiles, x):
        windows, _ = _gather(x, T, 0 if down.pad else -1, 2, 2 * T.size + 1)
        return _scatter(self.cache[down], _conv(down.conv, windows), T)

    def up(self, up: Upsample, T: Tiles, x):
        half = dataclasses.replace(T, ys=T.ys // 2, xs=T.xs // 2)
        windows, _ = _gather(x, half, -1, 1, T.size // 2 + 2)  # the low-resolution window, one pixel of halo
        windows = windows.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)[..., 1:-1, 1:-1]
        return _scatter(self.cache[up], _conv(up.conv, windows), T)

    def _put(self, module: nn.Module, idx: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        out = self.cache[module].clone()
        out.view(*out.shape[:2], -1)[:, :, idx] = tokens
        return out

    def self_attention(self, attn, h: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Queries of the active tokens h (B, N_active, D) against the keys and values of all tokens: the
        cached ones, with the active tokens' own put in."""
        q, k, v = attn.qkv(h).chunk(3, dim=-1)
        keys, values = (z.clone() for z in self.cache[attn])
        keys[:, idx], values[:, idx] = k, v
        B, N, D = h.shape
        q, keys, values = (z.unflatten(-1, (attn.heads, -1)).transpose(1, 2) for z in (q, keys, values))
        return attn.out(F.scaled_dot_product_attention(q, keys, values).transpose(1, 2).reshape(B, N, D))

    def attention(self, block: AttentionBlock, T: Tiles, x, context=None):
        idx = T.pixels()
        xa = x.flatten(2)[:, :, idx]  # (B, C, N_active)
        h = _affine(xa, self.stats(block.norm, x)).transpose(1, 2)
        return self._put(block, idx, xa + self.self_attention(block.attn, h, idx).transpose(1, 2))

    def transformer(self, st: SpatialTransformer, T: Tiles, x, context=None):
        idx = T.pixels()
        xa = x.flatten(2)[:, :, idx]  # (B, C, N_active)
        h = _affine(xa, self.stats(st.norm, x)).transpose(1, 2)  # tokens; the 1x1 conv projections act as linear maps
        project = (lambda layer, z: layer(z)) if st.linear else (
            lambda conv, z: F.linear(z, conv.weight[:, :, 0, 0], conv.bias))
        h = project(st.proj_in, h)
        b = st.block
        h = h + self.self_attention(b.attn1, b.norm1(h), idx)
        if b.attn2 is not None:
            h = h + b.attn2(b.norm2(h), context)
        h = h + b.ff(b.norm3(h))
        return self._put(st, idx, xa + project(st.proj_out, h).transpose(1, 2))
