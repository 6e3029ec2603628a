"""DDIM inversion and null-text inversion on the shipped shapes U-Net: the trajectory, the round trip, what
guidance does to it and what null-text inversion restores, and bad input."""

import pytest
import torch

from coursekit import zoo
from coursekit.data import ShapesWorld
from coursekit.editing import Inversion, invert, null_text_invert, psnr, reconstruct

PIPE = zoo.load("shapes-unet")
WORLD = ShapesWorld(resolution=32, max_objects=2)
SCENES = WORLD.sample(2, seed=42)
IMAGES = WORLD.render(SCENES)[0]


def test_the_trajectory_runs_from_the_images_to_the_noise():
    inv = invert(PIPE, IMAGES, SCENES.captions(), steps=5)
    assert isinstance(inv, Inversion) and len(inv.latents) == 6 and inv.timesteps == [-1, 0, 200, 400, 600, 800]
    assert torch.equal(inv.latents[0], IMAGES) and inv.noise.shape == IMAGES.shape
    assert inv.captions == SCENES.captions() and inv.guidance == 1.0 and inv.steps == 5


@pytest.mark.slow
def test_the_round_trip_sharpens_with_more_steps():
    """Measured on these 2 images with their captions: PSNR 32.4 and 32.5 dB at 10 steps, 43.8 and 44.0 at 50."""
    errors = {}
    for steps in (10, 50):
        back = reconstruct(PIPE, invert(PIPE, IMAGES, SCENES.captions(), steps=steps))
        errors[steps] = psnr(back, IMAGES).median().item()
    assert errors[50] > 38 and errors[50] > errors[10] + 6, errors


def test_text_features_stand_in_for_the_caption():
    """Null-text inversion optimises the encoder's output: passing it as ``cond`` is the same call."""
    ids, t = PIPE.encode_text(SCENES.captions()), torch.tensor([10, 700])
    with torch.no_grad():
        by_ids = PIPE.denoiser(IMAGES, t, ids)
        by_features = PIPE.denoiser(IMAGES, t, PIPE.text_features(SCENES.captions()))
    assert torch.equal(by_ids, by_features)


@pytest.mark.slow
def test_null_text_inversion_restores_the_guided_round_trip():
    """At guidance 7.5 the plain round trip breaks (10 steps, these 2 images, measured: 13.0 and 13.7 dB);
    null-text inversion (10 Adam iterations per step) brings it back to 35.8 and 35.8 dB, above the unguided
    round trip at the same steps (32.4, 32.5): its last step is fitted to the image itself."""
    plain = psnr(reconstruct(PIPE, invert(PIPE, IMAGES, SCENES.captions(), guidance=7.5, steps=10)), IMAGES)
    inv = null_text_invert(PIPE, IMAGES, SCENES.captions(), guidance=7.5, steps=10)
    assert inv.guidance == 7.5 and sorted(inv.nulls) == [0, 100, 200, 300, 400, 500, 600, 700, 800, 900]
    assert inv.nulls[900].shape == PIPE.text_features(SCENES.captions()).shape
    restored = psnr(reconstruct(PIPE, inv), IMAGES)
    assert (restored > plain + 15).all() and (restored > 32).all(), (plain, restored)


def test_psnr_of_known_errors():
    a = torch.zeros(2, 3, 4, 4)
    b = a.clone()
    b[1] += 0.02  # MSE 4e-4 with peak 2: 10 log10(4 / 4e-4) = 40 dB
    got = psnr(a, b)
    assert got[0] == float("inf") and abs(got[1].item() - 40) < 1e-4


@pytest.mark.parametrize("call, name", [
    (lambda: invert(PIPE, IMAGES, steps=0), "steps"),
    (lambda: invert(PIPE, IMAGES * 1.5, steps=2), "images"),
    (lambda: invert(PIPE, IMAGES[:, :, :16, :16], steps=2), "images"),
    (lambda: invert(PIPE, IMAGES, ["one caption"], steps=2), "captions"),
    (lambda: invert(PIPE, IMAGES, "a red circle", steps=2), "captions"),
    (lambda: invert(PIPE, IMAGES, ["a red circle", "a zebra"], steps=2), r"captions\[1\] has"),
    (lambda: invert(PIPE, IMAGES, guidance=float("nan"), steps=2), "guidance"),
    (lambda: invert(PIPE.denoiser, IMAGES, steps=2), "pipe"),
    (lambda: reconstruct(PIPE, IMAGES), "inversion"),
    (lambda: psnr(IMAGES, IMAGES[:1]), "b"),
    (lambda: null_text_invert(PIPE, IMAGES, steps=2, lr=0.0), "lr"),
    (lambda: null_text_invert(PIPE, IMAGES, steps=2, iterations=-1), "iterations"),
    (lambda: null_text_invert(PIPE, IMAGES, steps=0), "steps"),
    (lambda: null_text_invert(PIPE, IMAGES, ["one caption"], steps=2), "captions"),
    (lambda: PIPE.denoiser(IMAGES, torch.tensor([1, 2]), torch.zeros(2, 32, 7)), "cond"),
])
def test_bad_input_raises_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call()
