"""Imagic (editing/imagic.py) on the shipped shapes-unet: each stage lowers the loss it optimises, the zoo model is
never changed, eta moves from the input towards the target caption, and bad input is refused."""

import warnings

import pytest
import torch

from coursekit import zoo
from coursekit.data import ShapesWorld
from coursekit.diffusion import diffusion_loss
from coursekit.editing import imagic
from coursekit.editing.imagic import fine_tune, optimize_embedding
from coursekit.evaluate import edit_success, psnr


@pytest.fixture(scope="module")
def pipe():
    return zoo.load("shapes-unet")


@pytest.fixture(scope="module")
def scene():
    world = ShapesWorld(resolution=32, max_objects=2)
    scenes = world.sample(1, seed=6100)
    edited = scenes.change(0, colour=(scenes.colour[:, 0] + 1) % 6)
    return world.render(scenes)[0], edited.captions()[0], scenes, edited


def held_out_loss(denoiser, pipe, image, embedding, draws=64):
    """The denoising loss on one fixed set of (t, noise) draws, none of which the stages trained on."""
    with torch.no_grad():
        return diffusion_loss(denoiser, pipe.schedule, image.expand(draws, -1, -1, -1),
                              embedding.expand(draws, -1, -1), generator=torch.Generator().manual_seed(12345)).item()


@pytest.fixture(scope="module")
def result(pipe, scene):
    image, caption, *_ = scene
    before = {k: v.clone() for k, v in pipe.denoiser.state_dict().items()}
    out = imagic(pipe, image, caption, seed=3)
    assert all(torch.equal(v, before[k]) for k, v in pipe.denoiser.state_dict().items()), "the zoo model changed"
    return out


@pytest.mark.slow
def test_each_stage_lowers_the_loss_it_optimises_on_draws_it_never_saw(pipe, scene, result):
    image, caption, *_ = scene
    target, optimized = result.target, result.optimized
    assert torch.equal(target, pipe.text_features([caption]))
    start = held_out_loss(pipe.denoiser, pipe, image, target)
    stage1 = held_out_loss(pipe.denoiser, pipe, image, optimized)
    stage2 = held_out_loss(result.tuned.denoiser, pipe, image, optimized)
    # measured: 0.0360 (e_tgt) -> 0.0130 (e_opt) -> 0.0112 (e_opt, fine-tuned)
    assert stage1 < 0.5 * start and stage2 < 0.9 * stage1
    assert len(result.losses["embedding"]) == 100 and len(result.losses["fine_tune"]) == 100
    assert result.tuned.denoiser is not pipe.denoiser and result.tuned.denoiser.encoder is pipe.denoiser.encoder
    assert not any(p.requires_grad for p in result.tuned.denoiser.network.parameters())


@pytest.mark.slow
def test_eta_moves_from_the_input_to_the_target_caption(scene, result):
    image, _, scenes, edited = scene
    out = result.generate([0.0, 1.0], num_inference_steps=25, seed=0).clamp(-1, 1)
    close = psnr(out, image.expand(2, -1, -1, -1))
    # measured: 30.0 dB at eta 0, 17.7 at eta 1 (the new colour)
    assert close[0] > 27 and close[0] > close[1] + 5
    # the judge: eta 0 reads the input's colour, eta 1 the target caption's, the rest of the scene kept at both
    judge = zoo.load("shapes-classifier")
    at_0, at_1 = edit_success(judge, out[:1], scenes, "colour"), edit_success(judge, out[1:], edited, "colour")
    assert at_0["target"].all() and at_1["target"].all() and at_0["kept"].all() and at_1["kept"].all()
    assert torch.equal(result.embedding(0.0), result.optimized) and torch.equal(result.embedding(1.0), result.target)
    assert torch.allclose(result.embedding(0.25), 0.25 * result.target + 0.75 * result.optimized)
    # one noise for every eta: a list generates what each eta alone does
    assert torch.allclose(result.generate([1.0], num_inference_steps=5, seed=2),
                          result.generate([0.0, 1.0], num_inference_steps=5, seed=2)[1:],
                          atol=1e-5)


def test_stages_run_alone_and_zero_steps_change_nothing(pipe, scene):
    image, caption, *_ = scene
    target = pipe.text_features([caption])
    e, losses = optimize_embedding(pipe, image, target, steps=0, lr=1e-2)
    assert torch.equal(e, target) and losses == []
    tuned, losses = fine_tune(pipe, image, target, steps=2, lr=1e-6, batch=2)
    assert len(losses) == 2 and any(not torch.equal(a, b) for a, b in
                                     zip(tuned.denoiser.parameters(), pipe.denoiser.parameters()))


def test_bad_input_is_refused_the_seed_decides_the_draws_and_guidance_changes_the_output(pipe, scene):
    image, caption, *_ = scene
    short = dict(embed_steps=2, tune_steps=1)
    result = imagic(pipe, image, caption, seed=3, **short)
    assert torch.equal(result.optimized, imagic(pipe, image, caption, seed=3, **short).optimized)
    assert not torch.equal(result.optimized, imagic(pipe, image, caption, seed=4, **short).optimized)
    # generate's guidance_scale is used: None is the pipeline's default (3.0), another scale another image
    draw = dict(num_inference_steps=2, seed=0)
    weak, strong = (result.generate([0.5], guidance_scale=g, **draw) for g in (1.0, 5.0))
    assert torch.equal(weak, result.generate([0.5], guidance_scale=1.0, **draw))
    assert torch.equal(result.generate([0.5], **draw), result.generate([0.5], guidance_scale=3.0, **draw))
    assert (weak - strong).abs().mean() > 0.1  # measured 0.333 (2 steps, seed 0); bound 1/3 of it
    with pytest.raises(ValueError, match="^image must be one image"):
        imagic(pipe, image.expand(2, -1, -1, -1), caption)
    with pytest.raises(ValueError, match="^image must lie in"):
        imagic(pipe, image * 2, caption)
    with pytest.raises(ValueError, match=r"^prompt\[0\] has words the model does not know: \['puce'\]"):
        imagic(pipe, image, "a puce circle")
    with pytest.raises(ValueError, match="^embed_lr must be > 0"):
        imagic(pipe, image, caption, embed_lr=0.0)
    with pytest.raises(ValueError, match="^tune_steps"):
        imagic(pipe, image, caption, tune_steps=-1)
    with pytest.raises(ValueError, match="^pipe must be a coursekit Pipeline"):
        imagic(pipe.denoiser, image, caption)
    with pytest.raises(ValueError, match=r"^eta must be >= 0"):
        result.embedding(-0.1)
    with pytest.raises(ValueError, match="^eta must be finite"):
        result.embedding(float("nan"))
    with pytest.raises(ValueError, match="^etas must be a non-empty list"):
        result.generate(0.5)
    with pytest.warns(UserWarning, match="extrapolates past the target"):
        result.embedding(1.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result.embedding(1.0)


def test_stage_functions_check_the_embedding(pipe, scene):
    image, caption, *_ = scene
    with pytest.raises(ValueError, match=r"^embedding must be one embedding \(1, L, width\)"):
        optimize_embedding(pipe, image, pipe.text_features([caption, caption]), steps=1, lr=1e-2)
    with pytest.raises(ValueError, match="^embedding must have shape"):
        fine_tune(pipe, image, pipe.text_features([caption])[0], steps=1, lr=1e-6)
    with pytest.raises(ValueError, match="^shared_noise must be a bool"):
        pipe.generate_from(pipe.text_features([caption]), num_inference_steps=1, shared_noise="yes")
    with pytest.raises(ValueError, match="^prompt_embeds must be a torch.Tensor"):
        pipe.generate_from([caption], num_inference_steps=1)
    with pytest.raises(ValueError, match=r"^prompt_embeds must have shape \(\*, 32, 128\)"):
        pipe.generate_from(pipe.encode_text([caption]), num_inference_steps=1)  # token ids: text_features first
