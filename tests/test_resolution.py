"""simple diffusion's ideas (Hoogeboom, Heek & Salimans, ICML 2023): the resolution-shifted schedule for any
schedule, the interpolated schedule, the multiscale loss, and the Bayes accuracy that measures what a noise level
leaves of a choice between known images (lesson 01, section 6)."""

import math

import pytest
import torch
import torch.nn.functional as F

from coursekit import diffusion as d
from coursekit.evaluate import bayes_accuracy


def test_shift_snr_multiplies_the_snr_by_the_squared_resolution_ratio_and_matches_the_closed_form():
    base = d.shifted_cosine(1000, resolution=32, base_resolution=32)
    shifted = d.shift_snr(base, 128, 32)
    assert torch.allclose(shifted.alphas_cumprod, d.shifted_cosine(1000, 128, 32).alphas_cumprod, rtol=1e-4,
                          atol=1e-7)
    ratio = (shifted.snr() / base.snr()).double()
    # the last levels' float32 abar is too near 0 for a ratio
    assert torch.allclose(ratio[:990], torch.full_like(ratio[:990], 1 / 16), rtol=1e-3)
    linear = d.linear()
    assert torch.allclose(d.shift_snr(linear, 64, 64).alphas_cumprod, linear.alphas_cumprod, rtol=1e-5)
    assert (d.shift_snr(linear, 64, 32).alphas_cumprod < linear.alphas_cumprod).all()  # more noise at every t


def test_the_interpolated_schedule_runs_from_the_high_shift_at_the_clean_end_to_the_low_one_at_the_noisy_end():
    u = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)[1:-1]
    mixed = d.logsnr_interpolated_cosine(u, 512, low=32, high=256)
    low, high = d.logsnr_shifted_cosine(u, 512, 32), d.logsnr_shifted_cosine(u, 512, 256)
    assert torch.allclose(mixed, u * low + (1 - u) * high)
    assert ((low < mixed) & (mixed < high)).all()
    ends = torch.tensor([1e-6, 1 - 1e-6], dtype=torch.float64)
    e = d.logsnr_interpolated_cosine(ends, 512, 32, 256)
    assert e[0] == pytest.approx(d.logsnr_shifted_cosine(ends[:1], 512, 256).item(), abs=1e-4)
    assert e[1] == pytest.approx(d.logsnr_shifted_cosine(ends[1:], 512, 32).item(), abs=1e-4)
    schedule = d.interpolated_cosine(1000, 512)
    assert schedule.T == 1000 and (schedule.alphas_cumprod[1:] < schedule.alphas_cumprod[:-1]).all()


def test_the_multiscale_loss_charges_a_coarse_error_at_every_scale_and_pixel_noise_only_at_full_resolution():
    target, delta = torch.zeros(2, 3, 128, 128), 0.1
    offset = torch.full_like(target, delta)  # a wrong colour everywhere: survives every pooling
    sign = 1 - 2 * ((torch.arange(128)[:, None] + torch.arange(128)[None, :]) % 2)
    checker = delta * sign.float().expand_as(target)  # pixel noise: gone after any 2x2 pooling
    assert F.mse_loss(offset, target) == pytest.approx(F.mse_loss(checker, target))  # the same plain MSE
    scales = (32, 64, 128)
    assert d.multiscale_loss(offset, target, 32).item() == pytest.approx(delta**2 * sum(1 / s for s in scales))
    assert d.multiscale_loss(checker, target, 32).item() == pytest.approx(delta**2 / 128, rel=1e-5)
    assert d.multiscale_loss(offset, target, 128).item() == pytest.approx(F.mse_loss(offset, target).item() / 128)


def test_diffusion_loss_takes_the_multiscale_loss_on_request():
    schedule, x0 = d.linear(), torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    denoiser = lambda x, t, c: 0.5 * x  # noqa: E731
    options = dict(prediction_type="epsilon")
    plain = d.diffusion_loss(denoiser, schedule, x0, generator=torch.Generator().manual_seed(1), **options)
    multi = d.diffusion_loss(denoiser, schedule, x0, generator=torch.Generator().manual_seed(1), **options,
                             multiscale_base=32)
    # the same t and noise: rebuild the prediction and the target and compare
    g = torch.Generator().manual_seed(1)
    t = torch.randint(0, schedule.T, (2,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    prediction = denoiser(d.q_sample(x0, t, noise, schedule), t, None)
    assert plain.item() == pytest.approx(F.mse_loss(prediction, noise).item(), rel=1e-6)
    assert multi.item() == pytest.approx(d.multiscale_loss(prediction, noise, 32).item(), rel=1e-6)


def test_bayes_accuracy_between_two_images_is_the_closed_form():
    """K = 2: the observer errs when the noise's projection on x_1 - x_2 passes half their distance, so the
    accuracy is Phi(sqrt(abar) |x_1 - x_2| / (2 sqrt(1 - abar)))."""
    g = torch.Generator().manual_seed(0)
    candidates = torch.rand(40, 2, 1, 4, 4, generator=g) * 0.2
    truth = torch.randint(0, 2, (40,), generator=g)
    abar = torch.tensor([0.01, 0.05, 0.2])
    distance = (candidates[:, 0] - candidates[:, 1]).flatten(1).norm(dim=1).double()
    exact = torch.stack([torch.special.ndtr(a.double().sqrt() * distance / (2 * (1 - a.double()).sqrt())).mean()
                         for a in abar])
    measured = bayes_accuracy(candidates, truth, abar, draws=2000, seed=1)
    assert torch.allclose(measured, exact, atol=0.01), (measured, exact)  # 80,000 draws each: SE about 0.002
    assert bayes_accuracy(candidates, truth, 1 - 1e-9, draws=4).item() == 1.0


def test_bayes_accuracy_sees_a_4x_upsampled_image_as_the_original_at_16x_the_snr():
    g = torch.Generator().manual_seed(2)
    small = torch.rand(32, 6, 3, 8, 8, generator=g) * 2 - 1
    big = small.repeat_interleave(4, -1).repeat_interleave(4, -2)
    truth = torch.randint(0, 6, (32,), generator=g)
    snr = torch.tensor([0.005, 0.01, 0.02])
    a_small, a_big = snr / (1 + snr), (snr / 16) / (1 + snr / 16)
    at_small = bayes_accuracy(small, truth, a_small, draws=200)
    at_big = bayes_accuracy(big, truth, a_big, draws=200)
    assert torch.allclose(at_small, at_big, atol=0.03), (at_small, at_big)  # 6,400 draws each: SE about 0.006
    assert (bayes_accuracy(big, truth, a_small, draws=200) > at_small + 0.1).all()  # same SNR: far more is left


@pytest.mark.parametrize("call, name", [
    (lambda: d.shift_snr("cosine", 64, 32), "schedule"),
    (lambda: d.shift_snr(d.linear(), 0, 32), "resolution"),
    (lambda: d.interpolated_cosine(1000, 512, low=64, high=32), "high"),
    (lambda: d.multiscale_loss(torch.zeros(1, 3, 48, 48), torch.zeros(1, 3, 48, 48), 32), "prediction"),
    (lambda: d.multiscale_loss(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 32, 32), 32), "target"),
    (lambda: bayes_accuracy(torch.zeros(2, 1, 3, 4, 4), torch.zeros(2, dtype=torch.long), 0.5), "candidates"),
    (lambda: bayes_accuracy(torch.zeros(2, 3, 3, 4, 4), torch.tensor([0, 3]), 0.5), "truth"),
    (lambda: bayes_accuracy(torch.zeros(2, 3, 3, 4, 4), torch.tensor([0.0, 1.0]), 0.5), "truth"),
    (lambda: bayes_accuracy(torch.zeros(2, 3, 3, 4, 4), torch.tensor([0, 1]), 1.0), "abar"),
    (lambda: bayes_accuracy(torch.zeros(2, 3, 3, 4, 4), torch.tensor([0, 1]), 0.5, draws=0), "draws"),
])
def test_bad_input_is_refused_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}"):
        call()


def test_the_shift_is_two_log_of_the_resolution_ratio():
    u = torch.tensor([0.3], dtype=torch.float64)
    assert (d.logsnr_shifted_cosine(u, 128, 32) - d.logsnr_cosine(u)).item() == pytest.approx(2 * math.log(32 / 128))
