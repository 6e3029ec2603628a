"""Widgets are thin wrappers over plain functions; test the functions and the wiring headlessly."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

import coursekit.diffusion as d  # noqa: E402
from coursekit.data import GaussianMixture, ShapesWorld  # noqa: E402
from coursekit.models import MixtureDenoiser  # noqa: E402
from coursekit.viz import show_images, show_points, to_display  # noqa: E402
from coursekit.widgets import denoising_explorer, noised_and_denoised  # noqa: E402

SCHEDULE = d.linear()
IMAGES = ShapesWorld(resolution=16).render(ShapesWorld(resolution=16).sample(4, seed=0))[0]
DENOISER = MixtureDenoiser(GaussianMixture.from_images(IMAGES, std=0.05), SCHEDULE)
NOISE = torch.randn(IMAGES.shape, generator=torch.Generator().manual_seed(0))


def test_noised_and_denoised_recovers_the_image_at_low_noise():
    x_t, x0_hat = noised_and_denoised(IMAGES, 50, NOISE, DENOISER, SCHEDULE)
    assert torch.equal(x_t, d.q_sample(IMAGES, 50, NOISE, SCHEDULE))
    assert (x0_hat - IMAGES).abs().mean() < 0.05 < (x_t - IMAGES).abs().mean()


def test_explorer_redraws_when_the_slider_moves():
    w = denoising_explorer(IMAGES, NOISE, DENOISER, SCHEDULE, t=100)
    first = w.result
    w.children[0].value = 800
    assert w.result is not first and "t = 800" in w.result.get_suptitle()


def test_display_helpers():
    shown = to_display(torch.tensor([[[[-2.0, 0.0], [1.0, 3.0]]]]))
    assert shown.shape == (1, 2, 2, 1) and shown.min() == 0 and shown.max() == 1
    assert len(show_images(IMAGES, titles=list("abcd"), ncols=2).axes) == 4
    assert len(show_points([torch.zeros(5, 2), torch.ones(5, 2)]).axes) == 2


@pytest.mark.parametrize("call, name", [
    (lambda: show_images(IMAGES, titles=["a"]), "titles"),
    (lambda: to_display(torch.zeros(1, 2, 4, 4)), "images"),
    (lambda: show_points([torch.zeros(5, 3)]), r"clouds\[0\]"),
    (lambda: denoising_explorer(IMAGES, NOISE, DENOISER, SCHEDULE, t=1000), "t"),
    (lambda: noised_and_denoised(IMAGES, 10, NOISE[:2], DENOISER, SCHEDULE), "noise"),
])
def test_bad_input(call, name):
    with pytest.raises(ValueError, match=rf"^{name}"):
        call()
