"""Widgets are thin wrappers over plain functions; test the functions and the wiring headlessly."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

import coursekit.diffusion as d  # noqa: E402
from coursekit.data import GaussianMixture, ShapesWorld  # noqa: E402
from coursekit.models import MixtureDenoiser  # noqa: E402
from coursekit.viz import show_images, show_points, to_display  # noqa: E402
from coursekit.widgets import (  # noqa: E402
    denoising_explorer, dit_explorer, dit_report, inversion_explorer, noised_and_denoised, round_trip, unet_explorer,
    unet_report)

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


def test_unet_report_counts_what_the_model_has():
    from coursekit.models import UNet, UNetConfig, count_parameters

    report = unet_report(base=32, levels=2, layers=1, attention_16=True, transformer=False)
    model = UNet(UNetConfig(channels=(32, 64), attention=(False, True), heads=(1, 1), layers_per_level=1))
    assert report["parameters"] == count_parameters(model)
    assert report["shapes"][0] == ("down.0.res.0", (1, 32, 32, 32)) and report["macs"] > 0


def test_dit_report_matches_the_paper_for_xl2():
    r = dit_report("XL", 2, 256)
    assert r["tokens"] == 256 and abs(r["gmacs"] - 118.62) < 0.5 and round(r["parameters"] / 1e6) == 675
    with pytest.raises(ValueError, match="^size and patch"):
        dit_report("M", 2)


def test_explorers_build_and_respond():
    w = unet_explorer()
    w.children[0].value = 64  # the base width slider (default 128: DDPM's 35.7M parameters)
    assert w.result["parameters"] == unet_report(base=64)["parameters"] < 10e6
    d_w = dit_explorer()
    d_w.children[0].value = "B"
    assert d_w.result["name"] == "DiT-B/2"


@pytest.mark.slow
def test_inversion_explorer_inverts_when_asked():
    """The widget's wiring: it computes nothing until Invert is pressed, then shows ``round_trip`` at the chosen steps
    (that more steps sharpen the round trip is tests/test_inversion.py's check)."""
    from coursekit import zoo

    pipe, world = zoo.load("shapes-unet"), ShapesWorld(resolution=32)
    scenes = world.sample(2, seed=42)
    images = world.render(scenes)[0]
    coarse = round_trip(pipe, images, scenes.captions(), num_inference_steps=2)
    assert coarse["noise"].shape == images.shape
    w = inversion_explorer(pipe, images, scenes.captions())
    drawn = round_trip(pipe, images[:1], scenes.captions()[:1], num_inference_steps=10)  # its default, on creation
    assert torch.allclose(w.result["psnr"], drawn["psnr"], atol=1e-3)
    w.children[1].value = 2
    w.update()
    # the first image alone against it in a batch of two: equal up to rounding, which may depend on the batch size
    assert torch.allclose(w.result["psnr"], coarse["psnr"][:1], atol=1e-3)


def test_guidance_explorer_draws_guidance_3_on_creation_and_samples_when_asked():
    from coursekit import zoo
    from coursekit.widgets import guidance_explorer, guidance_report

    pipe, judge = zoo.load("shapes-unet"), zoo.load("shapes-classifier")
    scenes = ShapesWorld(resolution=32).sample(2, seed=8)
    w = guidance_explorer(pipe, judge, scenes, steps=3)
    assert torch.equal(w.result["images"], guidance_report(pipe, judge, scenes, 3.0, steps=3)["images"])
    w.children[0].value = 0.0
    assert torch.equal(w.result["images"], guidance_report(pipe, judge, scenes, 3.0, steps=3)["images"])  # not yet
    w.update()
    assert torch.equal(w.result["images"], guidance_report(pipe, judge, scenes, 0.0, steps=3)["images"])


def test_sdedit_explorer_paints_moves_and_runs_when_asked(capsys):
    from coursekit import zoo
    from coursekit.data import BACKGROUNDS, COLOURS
    from coursekit.editing import sdedit
    from coursekit.widgets import sdedit_explorer, stroke_guide

    preset = "red blob in the center on white"
    guide = stroke_guide(preset)
    moved = stroke_guide(preset, "blue", dx=0.2)
    red, blue, white = (torch.tensor(c) * 2 - 1 for c in (COLOURS["red"], COLOURS["blue"], BACKGROUNDS["white"]))
    assert guide.shape == (1, 3, 32, 32) and (guide[0, :, 16, 16] - red).abs().max() < 0.05
    assert (moved[0, :, 16, 22] - blue).abs().max() < 0.05 and (moved[0, :, 16, 9] - white).abs().max() < 0.05
    with pytest.raises(ValueError, match="preset"):
        stroke_guide("a cat")
    pipe = zoo.load("shapes-unet")
    w = sdedit_explorer(pipe, steps=4)  # drawn at its defaults on creation
    assert torch.equal(w.result, sdedit(pipe, guide, [""], strength=0.5, num_inference_steps=4, guidance_scale=1.0))
    w.children[2].value, w.children[4].value, w.children[5].value, w.children[6].value = 0.2, 0.3, "a red circle", 2
    w.update()
    expected = sdedit(pipe, stroke_guide(preset, dx=0.2), ["a red circle"], strength=0.3, num_inference_steps=4,
                      guidance_scale=1.0, seed=2)
    assert torch.equal(w.result, expected)
    w.children[5].value = "a zebra"  # unknown to the tokenizer: the message is printed, nothing is drawn
    capsys.readouterr()
    w.update()
    assert w.result is None and "prompt[0] has words the model does not know: ['zebra']" in capsys.readouterr().out


def test_diffedit_threshold_explorer_shows_the_mask_of_the_ratio():
    from coursekit.editing import mask_from_map
    from coursekit.widgets import diffedit_threshold_explorer, mask_threshold

    guide = torch.zeros(2, 1, 16, 16)
    guide[:, :, 4:12, 4:12] = 1.0  # 64 of 256 pixels: the mean is 1/4
    region = (guide > 0).float()
    assert (mask_threshold(guide, region, 3.0)["iou"] == 1).all()  # 1 > 1.5 / 4
    assert (mask_threshold(guide, region, 10.0)["iou"] == 0).all()  # 1 < 5 / 4
    w = diffedit_threshold_explorer(IMAGES[:2], guide, region)
    assert w.result["iou"].item() == 1
    w.children[1].value = 10.0
    assert w.result["iou"].item() == 0 and torch.equal(w.result["mask"], mask_from_map(guide[:1], 10.0))
    with pytest.raises(ValueError, match="^region"):
        diffedit_threshold_explorer(IMAGES[:2], guide, region[:1])


def test_imagic_explorer_generates_at_the_slider_eta():
    from coursekit import zoo
    from coursekit.editing import imagic
    from coursekit.widgets import imagic_explorer

    world = ShapesWorld(resolution=32)
    scenes = world.sample(1, seed=3)
    image = world.render(scenes)[0]
    result = imagic(zoo.load("shapes-unet"), image, scenes.captions()[0], embed_steps=1, tune_steps=1)
    w = imagic_explorer(result, image, steps=3)
    assert torch.equal(w.result, result.generate([0.6], num_inference_steps=3).clamp(-1, 1))
    w.children[0].value = 0.0
    assert torch.equal(w.result, result.generate([0.0], num_inference_steps=3).clamp(-1, 1))
    with pytest.raises(ValueError, match="^steps"):
        imagic_explorer(result, image, steps=0)
