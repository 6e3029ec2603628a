"""ipywidgets front-ends over plain functions (the lessons call the functions directly too).

Only APIs common to ipywidgets 7.7 (Colab) and 8 (JupyterLab) are used; sliders that trigger
computation use ``continuous_update=False``.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from ._checks import check_same_shape, check_tensor, check_timesteps
from .diffusion import NoiseSchedule, predict_x0, q_sample
from .viz import show_images


def noised_and_denoised(x0: torch.Tensor, t: int, noise: torch.Tensor, denoiser, schedule: NoiseSchedule,
                        cond: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t, x0_hat): the images noised to level t, and the denoiser's one-shot estimate of x0 from them."""
    check_tensor("x0", x0, ndim=4)
    check_same_shape("noise", noise, "x0", x0)
    check_timesteps("t", t, schedule.T)
    x_t = q_sample(x0, t, noise, schedule)
    return x_t, predict_x0(denoiser, schedule, x_t, t, cond)


def show_denoising(x0, t, noise, denoiser, schedule, cond=None):
    """Rows: x0, x_t, x0_hat, for the images ``x0``; returns the figure."""
    x_t, x0_hat = noised_and_denoised(x0, t, noise, denoiser, schedule, cond)
    abar = schedule.alphas_cumprod[t].item()
    fig = show_images(torch.cat([x0, x_t, x0_hat]), ncols=len(x0), size=1.3,
                      suptitle=f"t = {t}, abar = {abar:.3f}: rows x0, x_t, x0_hat")
    return fig


def denoising_explorer(x0, noise, denoiser, schedule, cond=None, t: int = 500):
    """A slider over t showing ``show_denoising``; returns the widget (display it, or read ``.result``)."""
    check_timesteps("t", t, schedule.T)
    slider = widgets.IntSlider(value=t, min=0, max=schedule.T - 1, step=10, description="t",
                               continuous_update=False)

    def draw(t):
        fig = show_denoising(x0, t, noise, denoiser, schedule, cond)
        plt.show()
        return fig

    return widgets.interactive(draw, t=slider)
