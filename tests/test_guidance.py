"""Pixel (layout) guidance and ILVR reference guidance, checked with the exact image-mixture denoiser."""

import pytest
import torch

import coursekit.diffusion as d
from coursekit.data import GaussianMixture, ShapesWorld
from coursekit.diffusion.guidance import ILVR, PixelGuidance, low_pass
from coursekit.models import MixtureDenoiser

SCHEDULE = d.linear()
WORLD = ShapesWorld(resolution=16, max_objects=2)
TRAIN = WORLD.render(WORLD.sample(16, seed=1))[0]
DENOISER = MixtureDenoiser(GaussianMixture.from_images(TRAIN, std=0.05), SCHEDULE)


def nearest(images):
    return torch.cdist(images.flatten(1), TRAIN.flatten(1)).argmin(1)


def test_pixel_guidance_steers_samples_to_the_layout():
    """The exact denoiser can only return one of its 16 images; a coarse 4x4 colour layout of image 5
    makes the sampler pick image 5 (measured: 6/8 at scale 30, 5/8 at 10, 1/8 at 1; 0/8 unguided)."""
    x_T = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    layout = torch.nn.functional.avg_pool2d(TRAIN[5:6], 4).expand(8, -1, -1, -1)
    plain = d.sample(DENOISER, SCHEDULE, x_T, d.DDIMSampler(25), progress=False)
    guided = d.sample(PixelGuidance(DENOISER, SCHEDULE, layout, scale=30.0, factor=4), SCHEDULE, x_T,
                      d.DDIMSampler(25), progress=False)
    assert (nearest(guided) == 5).float().mean() >= 0.6 and (nearest(plain) == 5).float().mean() <= 0.125


def test_ilvr_copies_the_references_coarse_structure():
    """Measured gap of the low-passed images to the reference's: 0.547 unguided, 0.00076 with ILVR (factor 4,
    bicubic, every step refined, the last with the clean reference); with factor 2 every sample becomes the
    reference image itself."""
    x_T = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    reference = TRAIN[3:4].expand(8, -1, -1, -1)
    plain = d.sample(DENOISER, SCHEDULE, x_T, d.DDIMSampler(25), progress=False)
    guided = d.sample(DENOISER, SCHEDULE, x_T, ILVR(d.DDIMSampler(25), reference, factor=4), progress=False)
    gap = lambda x: (low_pass(x, 4) - low_pass(reference, 4)).abs().mean().item()  # noqa: E731
    assert gap(guided) < 0.003 * gap(plain)  # measured 0.0014 (0.00076 / 0.547, seed 1); bound about 2x
    finer = d.sample(DENOISER, SCHEDULE, x_T, ILVR(d.DDIMSampler(25), reference, factor=2), progress=False)
    assert (nearest(finer) == 3).all()


def test_universal_guidance_climbs_its_log_p_and_pixel_guidance_is_its_layout_case():
    """A score that wants bright images: the guided samples are brighter, more so with a larger scale; and
    PixelGuidance is UniversalGuidance with the layout's log-likelihood."""
    x_T = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    samples = {s: d.sample(d.UniversalGuidance(DENOISER, SCHEDULE, lambda x0: x0.mean((1, 2, 3)), s), SCHEDULE,
                           x_T, d.DDIMSampler(10), progress=False) for s in (0.0, 100.0, 1000.0)}
    brightness = {s: x.mean().item() for s, x in samples.items()}
    # measured (seed 2): -0.211 unguided, 0.898 at 100, 1.009 at 1000; bounds about half of each step up
    assert brightness[100.0] > brightness[0.0] + 0.55 and brightness[1000.0] > brightness[100.0] + 0.05
    # at 100 every sample is brighter than all but the brightest training image (0.887); measured min 0.894
    assert (samples[100.0].mean((1, 2, 3)) > 0.8).all()
    layout = torch.nn.functional.avg_pool2d(TRAIN[5:6], 4).expand(8, -1, -1, -1)
    pixel = PixelGuidance(DENOISER, SCHEDULE, layout, scale=30.0, factor=4)
    log_p = lambda x0: -0.5 * ((torch.nn.functional.avg_pool2d(x0, 4) - layout) ** 2).sum((1, 2, 3))  # noqa: E731
    t = torch.full((8,), 600)
    x_t = d.q_sample(TRAIN[:8], 600, x_T, SCHEDULE)
    assert torch.allclose(pixel(x_t, t, None), d.UniversalGuidance(DENOISER, SCHEDULE, log_p, 30.0)(x_t, t, None))


def test_low_pass_box_is_a_projection_and_bicubic_leaves_no_block_edges():
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    box, smooth = low_pass(x, 8, "box"), low_pass(x, 8)
    assert torch.allclose(low_pass(box, 8, "box"), box, atol=1e-6)
    # the jump between neighbouring columns, at the 8-pixel block edges against elsewhere
    jump = lambda y: (y[..., 1:] - y[..., :-1]).abs().mean((0, 1, 2))  # noqa: E731
    edges = torch.arange(7, 31, 8)
    inside = torch.tensor([i for i in range(31) if i % 8 != 7])
    assert jump(box)[inside].max() == 0 and jump(box)[edges].min() > 0.1
    assert jump(smooth)[edges].mean() < 2 * jump(smooth)[inside].mean()
    flat = torch.full((1, 3, 32, 32), 0.3)
    assert torch.allclose(low_pass(flat, 8), flat, atol=1e-5)  # it keeps what is already coarse


def test_ilvr_refines_down_to_stop_t_and_its_last_step_takes_the_clean_reference():
    """Alg. 1's last step sets x_0's low frequencies to the reference's own: exactly so with the box filter, a
    projection. ``stop_t`` above the first level refines nothing; in between, the gap lies between the two; the
    reference's noise follows ``noise_seed``."""
    x_T = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    reference = TRAIN[3:4].expand(8, -1, -1, -1)
    run = lambda **kw: d.sample(DENOISER, SCHEDULE, x_T, ILVR(d.DDIMSampler(25), reference, factor=4, mode="box",  # noqa: E731
                                                             **kw), progress=False)
    gap = lambda x: (low_pass(x, 4, "box") - low_pass(reference, 4, "box")).abs().max().item()  # noqa: E731
    plain = d.sample(DENOISER, SCHEDULE, x_T, d.DDIMSampler(25), progress=False)
    assert gap(run()) < 1e-5
    assert torch.equal(run(stop_t=1000), plain)
    assert gap(run()) < gap(run(stop_t=300)) < gap(plain)
    assert torch.equal(run(noise_seed=3), run(noise_seed=3)) and not torch.equal(run(noise_seed=3), run())


@pytest.mark.parametrize("call, name", [
    (lambda: low_pass(torch.zeros(1, 3, 32, 32), 8, "nearest"), "mode"),
    (lambda: low_pass(torch.zeros(1, 3, 30, 30), 8), "factor"),
    (lambda: low_pass(torch.zeros(3, 32, 32), 8), "x"),
    (lambda: ILVR(d.DDIMSampler(5), torch.zeros(1, 3, 30, 30), factor=8), "factor"),
    (lambda: ILVR(d.DDIMSampler(5), torch.zeros(1, 3, 32, 32), factor=8, mode="area"), "mode"),
])
def test_low_pass_and_ilvr_bad_input(call, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call()


class Reparameterised:
    """The mixture denoiser's eps, presented as a network that predicts x_0 or v."""

    def __init__(self, prediction_type):
        self.prediction_type = prediction_type

    def __call__(self, x, t, cond):
        eps, abar = DENOISER(x, t, cond), SCHEDULE.abar(t, x)
        return d.output_from_x0_eps(d.x0_from_eps(x, eps, abar), eps, abar, self.prediction_type)


@pytest.mark.parametrize("prediction_type", ["sample", "v_prediction"])
def test_sampling_and_guidance_read_the_denoisers_own_parameterisation(prediction_type):
    """The same model under another parameterisation samples the same images: with the default sampler, which
    follows the denoiser, and through pixel guidance and CFG, which return what they wrap predicts."""
    x_T = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    layout = torch.nn.functional.avg_pool2d(TRAIN[5:6], 4).expand(4, -1, -1, -1)
    other = Reparameterised(prediction_type)
    assert torch.allclose(d.sample(other, SCHEDULE, x_T, progress=False),
                          d.sample(DENOISER, SCHEDULE, x_T, progress=False), atol=1e-4)
    guided = d.ClassifierFreeGuidance(PixelGuidance(other, SCHEDULE, layout, scale=30.0, factor=4), 1.5)
    assert guided.prediction_type == prediction_type
    reference = d.ClassifierFreeGuidance(PixelGuidance(DENOISER, SCHEDULE, layout, scale=30.0, factor=4), 1.5)
    assert torch.allclose(d.sample(guided, SCHEDULE, x_T, d.DDIMSampler(25, prediction_type=prediction_type),
                                   progress=False),
                          d.sample(reference, SCHEDULE, x_T, d.DDIMSampler(25), progress=False), atol=1e-4)
    with pytest.raises(ValueError, match="^sampler.prediction_type is 'epsilon', but the denoiser"):
        d.sample(guided, SCHEDULE, x_T, d.DDIMSampler(25), progress=False)
    with pytest.raises(ValueError, match="^sampler.prediction_type"):
        d.sample(other, SCHEDULE, x_T, ILVR(d.DDIMSampler(25), TRAIN[:4], factor=4), progress=False)


@pytest.mark.parametrize("call, name", [
    (lambda: PixelGuidance(DENOISER, SCHEDULE, torch.zeros(3, 4, 4), 1.0, 4), "layout"),
    (lambda: PixelGuidance(DENOISER, SCHEDULE, torch.zeros(1, 3, 4, 4), -1.0, 4), "scale"),
    (lambda: d.UniversalGuidance(DENOISER, SCHEDULE, "white", 1.0), "log_p"),
    (lambda: d.UniversalGuidance(DENOISER, SCHEDULE, lambda x0: x0.sum(), 1.0)(
        torch.zeros(2, 3, 16, 16), torch.tensor([5, 5]), None), "log_p"),
    (lambda: PixelGuidance(DENOISER, SCHEDULE, torch.zeros(2, 3, 4, 4), 1.0, 4)(
        torch.zeros(2, 3, 8, 8), torch.tensor([5, 5]), None), "layout"),
    (lambda: ILVR(d.DDIMSampler(5), torch.zeros(3, 16, 16), 4), "reference"),
])
def test_bad_input(call, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call()
