"""DDIB between two 2-D Gaussian mixtures with their exact denoisers (no training, no model error): the
translation lands in the target domain, and source -> target -> source returns the input as steps grow."""

import pytest
import torch

import coursekit.diffusion as d
from coursekit import zoo
from coursekit.data import GaussianMixture, toy2d
from coursekit.editing import translate, translate_captions
from coursekit.models import MixtureDenoiser

SCHEDULE = d.linear()
RING = toy2d.gaussian_ring()  # 8 Gaussians on a circle of radius 2
SQUARE = GaussianMixture(torch.tensor([[-1.5, -1.5], [1.5, -1.5], [-1.5, 1.5], [1.5, 1.5]]), torch.full((4, 2), 0.09))
SOURCE, TARGET = MixtureDenoiser(RING, SCHEDULE), MixtureDenoiser(SQUARE, SCHEDULE)
X = RING.sample(500, torch.Generator().manual_seed(0))[0]


def near_square(points):
    """Share of points within 3 standard deviations (0.9) of a square component's mean."""
    return (torch.cdist(points.double(), SQUARE.means).min(1).values < 0.9).float().mean().item()


def test_the_translation_lands_in_the_target_domain():
    """Measured: 99.4% of the translated points at 50 steps sit within 3 std of a square component; of the
    ring's own points, the ones near the diagonals, about half do."""
    assert near_square(translate(X, SCHEDULE, SOURCE, TARGET, num_inference_steps=50)) > 0.97 and near_square(X) < 0.6


def test_the_cycle_returns_the_input_as_steps_grow():
    """Mean distance of source -> target -> source from the input (measured): 0.30 at 10 steps, 0.084 at 50,
    0.023 at 200, 0.010 at 500: first order in 1 / steps (each half solves the ODE with Euler steps)."""
    errors = {}
    for steps in (10, 50, 200):
        there = translate(X, SCHEDULE, SOURCE, TARGET, num_inference_steps=steps)
        back = translate(there, SCHEDULE, TARGET, SOURCE, num_inference_steps=steps)
        errors[steps] = (back - X).norm(dim=1).mean().item()
    assert errors[10] > errors[50] > errors[200] and errors[200] < 0.03 and errors[50] > 3 * errors[200], errors


@pytest.mark.parametrize("call, name", [
    (lambda: translate(X, SCHEDULE, SOURCE, TARGET, num_inference_steps=0), "num_inference_steps"),
    (lambda: translate_captions(zoo.load("shapes-unet"), torch.zeros(2, 3, 32, 32), source_prompt=["a"],
                                target_prompt=["b", "c"]), "source_prompt"),
    (lambda: translate_captions(zoo.load("shapes-unet"), torch.zeros(2, 3, 32, 32),
                                source_prompt=["a circle", "a square"], target_prompt="c d"), "target_prompt"),
    (lambda: translate_captions(zoo.load("shapes-unet"), torch.zeros(3, 32, 32), source_prompt=["a"],
                                target_prompt=["b"]), "image"),
    (lambda: translate_captions(zoo.load("shapes-unet"), torch.zeros(1, 3, 32, 32), source_prompt=["a red circle"],
                                target_prompt=["a red hexagon"]), r"target_prompt\[0\] has"),
])
def test_bad_input_raises_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call()


def test_one_conditional_model_translates_between_its_conditions():
    """DDIB with one class-conditional model (their ImageNet setting): encode under the source component, decode
    under the target's. The conditions go to the right halves: swapped, every point stays in its own component.
    Measured on the 15 points of component 0 (of 200): all reach component 4; the cycle returns them within a mean
    distance of 0.22, 0.11 and 0.031 at 20, 50 and 200 steps each way."""
    model = MixtureDenoiser(RING, SCHEDULE)
    x = RING.sample(200, torch.Generator().manual_seed(1))[0]
    x = x[RING.posterior(x.double()).argmax(1) == 0]  # the points of component 0
    k0, k4 = (torch.full((len(x),), k) for k in (0, 4))
    component = lambda y: RING.posterior(y.double()).argmax(1)  # noqa: E731
    there = translate(x, SCHEDULE, model, model, num_inference_steps=200, source_cond=k0, target_cond=k4)
    assert (component(there) == 4).float().mean() > 0.95
    swapped = translate(x, SCHEDULE, model, model, num_inference_steps=200, source_cond=k4, target_cond=k0)
    assert (component(swapped) == 0).all()
    back = translate(there, SCHEDULE, model, model, num_inference_steps=200, source_cond=k4, target_cond=k0)
    assert (back - x).norm(dim=1).mean() < 0.05



def test_translate_captions_guidance_pushes_further_from_the_input():
    """At guidance 3 the decoding follows the target caption harder than the exact ODE (guidance 1, the default):
    the image changes more. Measured (one scene, 3 steps each way): PSNR to the input 19.5 dB at guidance 1, 13.7 at
    3; mean change between the two 0.135."""
    from coursekit.data import ShapesWorld
    from coursekit.evaluate import psnr

    pipe, world = zoo.load("shapes-unet"), ShapesWorld(resolution=32, max_objects=2)
    scenes = world.sample(1, seed=42)
    image, edited = world.render(scenes)[0], scenes.change(0, colour=(scenes.colour[:, 0] + 1) % 6)
    run = lambda **kw: translate_captions(pipe, image, source_prompt=scenes.captions(),  # noqa: E731
                                          target_prompt=edited.captions(), num_inference_steps=3, **kw)
    exact, guided = run(), run(guidance_scale=3.0)
    assert (guided - exact).abs().mean() > 0.045  # measured 0.135; bound 1/3 of it
    assert psnr(guided, image) < psnr(exact, image) - 2  # measured 5.8 dB apart; bound 2 dB
