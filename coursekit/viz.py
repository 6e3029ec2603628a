"""Figures for the lessons: image grids and 2-D point clouds. Plain matplotlib, returning the figure."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch

from ._checks import check_tensor


def to_display(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) images in the models' range [-1, 1] -> (B, H, W, C) in [0, 1] for imshow.

    Values outside [-1, 1] (a sampler's overshoot) are clamped for display only; the tensor passed
    in is not modified.
    """
    check_tensor("images", images, ndim=4)
    if images.shape[1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got shape {tuple(images.shape)}")
    return ((images.detach().float().cpu() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1)


def show_images(
    images: torch.Tensor, titles: Sequence[str] | None = None, ncols: int | None = None, size: float = 1.6,
    suptitle: str | None = None,
):
    """A grid of images in [-1, 1], ``ncols`` per row (all in one row by default)."""
    pics = to_display(images).numpy()
    n = len(pics)
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles must hold one title per image ({n}), got {len(titles)}")
    ncols = ncols or n
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.3 if suptitle else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(pics[i].squeeze(-1) if pics.shape[-1] == 1 else pics[i], cmap="gray", vmin=0, vmax=1)
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def show_points(
    clouds: Sequence[torch.Tensor], titles: Sequence[str] | None = None, size: float = 2.6, lim: float = 3.5,
    s: float = 1.0,
):
    """Side-by-side scatter plots of 2-D point clouds (each (N, 2)) on a common square window, with integer
    ticks so that spreads and radii can be read off."""
    for i, c in enumerate(clouds):
        check_tensor(f"clouds[{i}]", c, shape=(None, 2))
    fig, axes = plt.subplots(1, len(clouds), figsize=(size * len(clouds), size), squeeze=False)
    for i, (ax, c) in enumerate(zip(axes[0], clouds)):
        c = c.detach().cpu().numpy()
        ax.scatter(c[:, 0], c[:, 1], s=s, alpha=0.5)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ticks = range(-int(lim), int(lim) + 1)
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.tick_params(labelsize=7, length=2, pad=1)
        ax.grid(lw=0.3, alpha=0.5)
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    fig.tight_layout()
    return fig
