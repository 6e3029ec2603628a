"""SDEdit on the shipped shapes U-Net: diffusers' img2img strength -> timesteps logic (run from diffusers' own
source) and its denoising loop reproduced, compositing with a mask, and bad input."""

import ast
import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from coursekit import zoo
from coursekit.data import ShapesWorld
from coursekit.diffusion import DDIMSampler, DDPMSampler, from_diffusers
from coursekit.editing import sdedit
from coursekit.editing.sdedit import start_index

PIPE = zoo.load("shapes-unet")
WORLD = ShapesWorld(resolution=32, max_objects=2)
SCENES = WORLD.sample(2, seed=7)
GUIDE = WORLD.render(SCENES)[0]


def diffusers_get_timesteps():
    """``StableDiffusionImg2ImgPipeline.get_timesteps`` taken from diffusers' source file (importing the pipeline
    needs transformers, which the course does not install)."""
    folder = Path(importlib.util.find_spec("diffusers").origin).parent
    source = (folder / "pipelines/stable_diffusion/pipeline_stable_diffusion_img2img.py").read_text()
    cls = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef)
               and n.name == "StableDiffusionImg2ImgPipeline")
    function = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "get_timesteps")
    namespace = {}
    exec(compile(ast.Module([function], []), "get_timesteps", "exec"), namespace)
    return namespace["get_timesteps"]


@pytest.mark.parametrize("scheduler", [DDIMScheduler(steps_offset=1), DDPMScheduler(timestep_spacing="trailing")])
def test_strength_picks_the_timesteps_diffusers_img2img_picks(scheduler):
    get_timesteps = diffusers_get_timesteps()
    for steps in (1, 3, 10, 25, 50, 999):
        _, sampler = from_diffusers(scheduler, steps)
        for strength in (0.05, 0.3, 0.5, 0.75, 0.8, 0.999, 1.0):
            scheduler.set_timesteps(steps)
            theirs, k = get_timesteps(SimpleNamespace(scheduler=scheduler), steps, strength, "cpu")
            if k == 0:
                with pytest.raises(ValueError, match="^strength"):
                    start_index(steps, strength)
                continue
            ours = [t for t, _ in sampler.plan(1000)[start_index(steps, strength):]]
            assert ours == theirs.tolist(), (steps, strength)


def test_the_run_is_diffusers_add_noise_then_its_scheduler_loop():
    """The same noise, then DDIM steps by diffusers' DDIMScheduler with the course model (v-prediction)."""
    steps, strength, seed = 10, 0.6, 3
    scheduler = DDIMScheduler(trained_betas=PIPE.schedule.betas.numpy(), prediction_type="v_prediction",
                              clip_sample=False)
    scheduler.set_timesteps(steps)
    start = start_index(steps, strength)
    noise = torch.randn(GUIDE.shape, generator=torch.Generator().manual_seed(seed))
    x = scheduler.add_noise(GUIDE, noise, scheduler.timesteps[start:start + 1])
    ids = PIPE.encode_text(SCENES.captions())
    with torch.no_grad():
        for t in scheduler.timesteps[start:]:
            x = scheduler.step(PIPE.denoiser(x, t.expand(2), ids), t, x).prev_sample
    ours = sdedit(PIPE, GUIDE, SCENES.captions(), strength=strength, seed=seed, guidance_scale=1.0,
                  sampler=DDIMSampler(steps, prediction_type="v_prediction"))
    assert torch.equal(ours, x)  # measured max gap 0.0: the same float operations as diffusers' loop


def test_a_mask_keeps_the_guide_outside_it_exactly():
    half = torch.zeros(1, 1, 32, 32)
    half[..., 16:] = 1
    options = dict(strength=0.6, num_inference_steps=10)
    kept = sdedit(PIPE, GUIDE, SCENES.captions(), mask_image=half, **options)
    free = sdedit(PIPE, GUIDE, SCENES.captions(), **options)
    assert torch.equal(kept[..., :16], GUIDE[..., :16])
    assert (kept[..., 16:] - GUIDE[..., 16:]).abs().max() > 0.05
    assert torch.equal(sdedit(PIPE, GUIDE, None, mask_image=torch.zeros(1, 1, 32, 32), **options), GUIDE)
    assert torch.equal(sdedit(PIPE, GUIDE, SCENES.captions(), mask_image=torch.ones(2, 1, 32, 32), **options), free)


class LastStep:
    """A sampler that runs ``sampler`` and keeps what its last step returned (before any mask blend)."""

    def __init__(self, sampler):
        self.sampler, self.num_steps, self.prediction_type = sampler, sampler.num_steps, sampler.prediction_type

    def plan(self, T):
        return self.sampler.plan(T)

    def step(self, *args, **kwargs):
        self.x_prev, x0 = self.sampler.step(*args, **kwargs)
        return self.x_prev, x0


def test_a_soft_mask_blends_each_step_with_the_guides_trajectory():
    """Mask 0.5: every step's result is half the model's step, half the guide's noisy trajectory; the last step's
    level is the guide itself, so the output is exactly (the last step + the guide) / 2."""
    image, caption, soft = GUIDE[:1], SCENES.captions()[:1], torch.full((1, 1, 32, 32), 0.5)
    recorder = LastStep(PIPE.sampler(10))
    half = sdedit(PIPE, image, caption, strength=0.3, sampler=recorder, mask_image=soft)
    assert torch.equal(half, soft * recorder.x_prev + (1 - soft) * image)
    free = sdedit(PIPE, image, caption, strength=0.3, num_inference_steps=10)
    # pulled halfway back to the guide at every step, it ends much nearer the guide than the unmasked edit
    ratio = (half - image).abs().mean() / (free - image).abs().mean()
    assert 0.07 < ratio < 0.6  # measured 0.227 (seed 0, 10 steps, strength 0.3); bounds about 3x either side


def test_guidance_scale_changes_the_edit():
    image, caption, options = GUIDE[:1], SCENES.captions()[:1], dict(strength=0.3, num_inference_steps=10)
    default = sdedit(PIPE, image, caption, **options)
    assert torch.equal(default, sdedit(PIPE, image, caption, guidance_scale=3.0, **options))  # the default
    for scale, measured in ((1.0, 0.0075), (7.0, 0.0134)):
        change = (sdedit(PIPE, image, caption, guidance_scale=scale, **options) - default).abs().mean()
        assert change > measured / 3, scale  # mean change from scale 3 measured as given (seed 0); bound 1/3 of it


def test_the_same_seed_gives_the_same_images_and_ddpm_runs():
    options = dict(strength=0.3, num_inference_steps=10, sampler="ddpm", guidance_scale=1.0)
    a = sdedit(PIPE, GUIDE, seed=1, **options)
    assert torch.equal(a, sdedit(PIPE, GUIDE, seed=1, **options))
    assert not torch.equal(a, sdedit(PIPE, GUIDE, seed=2, **options))


@pytest.mark.parametrize("call, name", [
    (lambda: sdedit(PIPE, GUIDE, strength=0.0), "strength"),
    (lambda: sdedit(PIPE, GUIDE, strength=1.5), "strength"),
    (lambda: sdedit(PIPE, GUIDE, strength=0.05, num_inference_steps=10), "strength"),
    (lambda: sdedit(PIPE, GUIDE * 1.2), "image"),
    (lambda: sdedit(PIPE, GUIDE[..., :16, :16]), "image"),
    (lambda: sdedit(PIPE, GUIDE, mask_image=torch.ones(2, 1, 16, 16)), "mask_image"),
    (lambda: sdedit(PIPE, GUIDE, mask_image=torch.ones(3, 1, 32, 32)), "mask_image"),
    (lambda: sdedit(PIPE, GUIDE, mask_image=torch.full((1, 1, 32, 32), 2.0)), "mask_image"),
    (lambda: sdedit(PIPE, GUIDE, sampler="euler"), "sampler"),
    (lambda: sdedit(PIPE, GUIDE, num_inference_steps=10, sampler=DDPMSampler(10)), "give num_inference_steps"),
    (lambda: sdedit(PIPE, GUIDE, ["a red circle"]), "prompt"),
    (lambda: sdedit(PIPE, GUIDE, num_inference_steps=0), "num_inference_steps"),
    (lambda: sdedit(PIPE, GUIDE, guidance_scale="3"), "guidance_scale"),
])
def test_bad_input_raises_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call()


def test_everything_after_the_prompt_is_keyword_only():
    with pytest.raises(TypeError, match="positional"):
        sdedit(PIPE, GUIDE, None, 0.5)
