"""Sparse SDEdit: SDEdit of an edited image, computed only where it differs from the original (SIGE, the method).

Li, Lin, Meng, Ermon, Han & Zhu, "Efficient Spatially Sparse Inference for Conditional GANs and Diffusion
Models", NeurIPS 2022. The engine that runs a U-Net on the active tiles from the original's cache is
``models.sparse``; here the original goes through the same SDEdit steps with the same noise densely, one cache per
network call, and the edited image replays those calls sparsely.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_choice, check_same_shape
from ..models.sparse import SparseUNet, Tiles, difference_mask
from ..models.sd import LatentUNet
from ..models.text import TextConditioned
from ..models.unet import UNet
from ..pipeline import Pipeline, check_pipeline
from .sdedit import sdedit


# --- SDEdit, sparsely ----------------------------------------------------------------------------------------


class _Replay(nn.Module):
    """The U-Net as a text-conditioned network that records a cache per call (on the original's trajectory),
    then, with ``replaying`` set, answers the same sequence of calls sparsely from those caches. Inputs are cast to
    the U-Net's dtype and the output back, as ``models.sd.LatentUNet`` does (Stable Diffusion in float16)."""

    def __init__(self, sparse: SparseUNet, tiles: dict[int, Tiles], norms: str):
        super().__init__()
        self.unet = sparse.unet  # so that the pipeline finds its parameters and device
        self.engine, self.tiles, self.norms, self.caches, self.replaying = sparse, tiles, norms, [], False

    def forward(self, x: torch.Tensor, t: torch.Tensor, context=None) -> torch.Tensor:
        dtype = next(self.unet.parameters()).dtype
        z, context = x.to(dtype), None if context is None else context.to(dtype)
        if not self.replaying:
            out, cache = self.engine.record(z, t, context)
            self.caches.append(cache)
        else:
            out = self.engine.sparse(z, t, context, self.caches.pop(0), self.tiles, self.norms)
        return out.to(x.dtype)


@torch.no_grad()
def sparse_sdedit(pipe: Pipeline, image: torch.Tensor, prompt: Sequence[str] | None = None, *,
                  original_image: torch.Tensor, strength: float = 0.5, num_inference_steps: int | None = None,
                  guidance_scale: float | None = None, seed: int = 0, sampler=None, threshold: float = 0.01,
                  dilate: int = 1, block: int = 8, norms: str = "frozen", progress: bool = False) -> torch.Tensor:
    """``sdedit`` of ``image`` (the edited guide), computed only where it differs from ``original_image`` (SIGE).

    The original goes through the same SDEdit (same noise, same steps) densely, keeping each call's cache; a
    deployment would keep those caches for every later edit of the image. The edited run then computes each
    layer on the active tiles of ``difference_mask(original_image, image, threshold, dilate)`` (one mask for the
    batch, so batch one edit of one image, or edits of one region); ``norms``: see ``SparseUNet.sparse``. The
    other arguments are ``sdedit``'s.

    ``pipe`` must hold a text-conditioned coursekit ``UNet``: the course's pixel models (``shapes-unet``), or Stable
    Diffusion with ``network="coursekit"``. On latents the mask is the latent cells whose image patch (the codec's
    factor on a side) changed; the VAE encoder reaches further than its patch, so the edited image's latents differ a
    little everywhere, and outside the mask the sparse pass keeps the original's activations (as SIGE does on SD)."""
    pipe = check_pipeline(pipe)
    original_image = pipe.check_images(original_image, "original_image")
    image = pipe.check_images(image)
    check_same_shape("image", image, "original_image", original_image)
    denoiser = pipe.denoiser
    network = denoiser.network if isinstance(denoiser, TextConditioned) else None
    unet = network.unet if isinstance(network, LatentUNet) else network
    if not isinstance(unet, UNet):
        raise ValueError("pipe.denoiser must be a TextConditioned coursekit UNet (shapes-unet, or Stable Diffusion "
                         f"loaded with network='coursekit'), got {type(network or denoiser).__name__}")
    engine = SparseUNet(unet, block)
    mask = difference_mask(original_image, image, threshold, dilate)
    if pipe.codec is not None:  # the latent cells whose image patch changed
        mask = F.max_pool2d(mask[None, None].float(), pipe.codec.factor)[0, 0] > 0
    replay = _Replay(engine, engine.tiles(mask), check_choice("norms", norms, ("frozen", "fresh")))
    twin = dataclasses.replace(pipe, denoiser=TextConditioned(replay, denoiser.encoder, denoiser.use,
                                                              denoiser.prediction_type))
    options = dict(prompt=prompt, strength=strength, num_inference_steps=num_inference_steps,
                   guidance_scale=guidance_scale, seed=seed, sampler=sampler, progress=progress)
    sdedit(twin, original_image, **options)
    replay.replaying = True
    return sdedit(twin, image, **options)
