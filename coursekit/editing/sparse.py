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
from torch import nn

from .._checks import check_choice, check_same_shape
from ..models.sparse import SparseUNet, Tiles, difference_mask
from ..models.text import TextConditioned
from ..models.unet import UNet
from ..pipeline import Pipeline, check_pipeline
from .sdedit import sdedit


# --- SDEdit, sparsely ----------------------------------------------------------------------------------------


class _Replay(nn.Module):
    """The U-Net as a text-conditioned network that records a cache per call (on the original's trajectory),
    then, with ``replaying`` set, answers the same sequence of calls sparsely from those caches."""

    def __init__(self, sparse: SparseUNet, tiles: dict[int, Tiles], norms: str):
        super().__init__()
        self.unet = sparse.unet  # so that the pipeline finds its parameters and device
        self.engine, self.tiles, self.norms, self.caches, self.replaying = sparse, tiles, norms, [], False

    def forward(self, x: torch.Tensor, t: torch.Tensor, context=None) -> torch.Tensor:
        if not self.replaying:
            out, cache = self.engine.record(x, t, context)
            self.caches.append(cache)
            return out
        return self.engine.sparse(x, t, context, self.caches.pop(0), self.tiles, self.norms)


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
    ``pipe`` must hold a text-conditioned coursekit ``UNet`` on pixels (the course's ``shapes-unet``)."""
    pipe = check_pipeline(pipe)
    if pipe.codec is not None:
        raise ValueError("pipe must work on pixels (no codec): the tiles are found where the images differ")
    original_image = pipe.check_images(original_image, "original_image")
    image = pipe.check_images(image)
    check_same_shape("image", image, "original_image", original_image)
    denoiser = pipe.denoiser
    if not isinstance(denoiser, TextConditioned) or not isinstance(denoiser.network, UNet):
        raise ValueError(f"pipe.denoiser must be a TextConditioned coursekit UNet, got {type(denoiser).__name__}")
    engine = SparseUNet(denoiser.network, block)
    replay = _Replay(engine, engine.tiles(difference_mask(original_image, image, threshold, dilate)),
                     check_choice("norms", norms, ("frozen", "fresh")))
    twin = dataclasses.replace(pipe, denoiser=TextConditioned(replay, denoiser.encoder, denoiser.use,
                                                              denoiser.prediction_type))
    options = dict(prompt=prompt, strength=strength, num_inference_steps=num_inference_steps,
                   guidance_scale=guidance_scale, seed=seed, sampler=sampler, progress=progress)
    sdedit(twin, original_image, **options)
    replay.replaying = True
    return sdedit(twin, image, **options)
