"""Scoring scenes: per-attribute and joint correctness, and the classifier's targets."""

import dataclasses
import math

import pytest
import torch

from coursekit.data import ShapesWorld
from coursekit.evaluate import (caption_accuracy, edit_success, read_scenes, render_distance, scene_accuracy,
                                swapped_reading)
from coursekit.models.classifier import ShapesClassifier, cell_targets

WORLD = ShapesWorld(resolution=32, max_objects=3)


def test_scene_accuracy_counts_each_attribute_and_the_whole_scene():
    scenes = WORLD.sample(64, seed=0)
    truth = cell_targets(scenes)
    assert all(v.all() for v in scene_accuracy(truth, scenes).values())
    wrong = {k: v.clone() for k, v in truth.items()}
    b, cell = 3, int(scenes.position[3, 0])
    wrong["colour"][b, cell] = (wrong["colour"][b, cell] + 1) % 6
    result = scene_accuracy(wrong, scenes)
    assert not result["colour"][b] and not result["joint"][b] and result["shape"][b] and result["colour"].sum() == 63
    extra = {k: v.clone() for k, v in truth.items()}
    empty_cell = int((truth["presence"][5] == 0).nonzero()[0])
    extra["presence"][5, empty_cell] = 1  # an object the caption does not mention
    assert not scene_accuracy(extra, scenes)["position"][5]


def test_cell_targets_put_each_object_in_its_cell():
    scenes = WORLD.sample(32, seed=1)
    t = cell_targets(scenes)
    assert (t["presence"].sum(1) == scenes.num_objects).all()
    for b, n in scenes.present.nonzero().tolist():
        cell = scenes.position[b, n]
        assert t["shape"][b, cell] == scenes.shape[b, n] and t["colour"][b, cell] == scenes.colour[b, n]
    assert (t["shape"][t["presence"] == 0] == -1).all()


def test_background_log_prob_is_a_normalised_differentiable_score():
    from coursekit.data.shapes import BACKGROUNDS

    torch.manual_seed(0)
    judge = ShapesClassifier().eval()
    images = (torch.rand(4, 3, 32, 32) * 2 - 1).requires_grad_(True)
    scores = torch.stack([judge.background_log_prob(images, name) for name in BACKGROUNDS])  # (3, B)
    assert scores.shape == (3, 4) and torch.allclose(scores.exp().sum(0), torch.ones(4), atol=1e-5)
    (grad,) = torch.autograd.grad(scores[0].sum(), images)
    assert grad.abs().sum() > 0
    with pytest.raises(ValueError, match="^background"):
        judge.background_log_prob(images, "pink")


def test_caption_accuracy_needs_whole_chunks():
    with pytest.raises(ValueError, match="^n must be a multiple of 32"):
        caption_accuracy(None, ShapesClassifier(), n=40)


class RenderingPipeline:
    """Draws every caption right: the renders of the scenes ``caption_accuracy`` samples for that seed (or noise)."""

    resolution = 32

    def __init__(self, noise=False, swap=False):
        self.noise, self.swap = noise, swap

    def generate(self, captions, guidance_scale, num_inference_steps, seed):
        g = torch.Generator().manual_seed(seed)
        if self.noise:
            return torch.rand(len(captions), 3, 32, 32, generator=g) * 2 - 1
        world = ShapesWorld(resolution=32)
        scenes = world.sample(len(captions), seed=0 if seed == 999 else seed)  # 999: chunk 0's captions again
        assert scenes.captions() == captions
        if self.swap:  # every two-object scene drawn with its objects' colours exchanged: attribute binding
            two, colour = scenes.num_objects == 2, scenes.colour.clone()
            colour[two, 0], colour[two, 1] = scenes.colour[two, 1], scenes.colour[two, 0]
            scenes = dataclasses.replace(scenes, colour=colour)
        return world.render(scenes)[0]


def test_caption_accuracy_scores_a_perfect_pipeline_near_one_and_noise_at_zero():
    """The judge reads 99% of renders right (its card), so a pipeline that draws every caption exactly scores the
    judge's accuracy, and one that draws noise scores nothing."""
    from coursekit import zoo

    judge = zoo.load("shapes-classifier")
    perfect = caption_accuracy(RenderingPipeline(), judge, n=32, steps=1)
    assert perfect["joint"] >= 0.97 and perfect["diversity_rms"] == 0.0
    assert caption_accuracy(RenderingPipeline(noise=True), judge, n=32, steps=1)["joint"] == 0.0
    assert perfect["two_objects"] > 8 and perfect["joint_two_objects"] >= 0.9 and perfect["binding_swapped"] == 0.0
    swapped = caption_accuracy(RenderingPipeline(swap=True), judge, n=32, steps=1)
    # every two-object scene of two colours is read with its colours swapped; those of one colour are right
    scenes = ShapesWorld(resolution=32).sample(32, seed=0)
    two = scenes.num_objects == 2
    differ = (scenes.colour[two, 0] != scenes.colour[two, 1]).float().mean().item()
    assert swapped["binding_swapped"] == pytest.approx(differ, abs=1 / 16) and differ > 0.5, (swapped, differ)
    assert swapped["joint_two_objects"] <= 1 - differ + 1 / 16


def test_diversity_is_the_mean_per_image_rms_distance_and_checks_its_inputs():
    from coursekit.evaluate import diversity_rms

    a = torch.zeros(2, 3, 4, 4)
    b = torch.stack([torch.full((3, 4, 4), 0.5), torch.full((3, 4, 4), 1.5)])
    assert diversity_rms(a, b) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="^a and b must be image batches"):
        diversity_rms(a, b[:1])


def test_level_errors_score_predicting_zero_as_one_and_a_t_blind_network_as_zero_change():
    import coursekit.diffusion as d
    from coursekit.evaluate import level_errors

    x0, schedule = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1, d.cosine()
    zero = level_errors(lambda x, t, c: torch.zeros_like(x) + 1e-3 * x, schedule, x0, None, levels=(10, 990))
    assert all(abs(r - 1) < 0.01 for r in zero["relative_error"])
    assert zero["t_change"] == [0.0, 0.0]  # the output does not depend on t
    with pytest.raises(ValueError, match="^levels"):
        level_errors(lambda x, t, c: x, schedule, x0, None, levels=(1000,))
    with pytest.raises(ValueError, match="^x0"):
        level_errors(lambda x, t, c: x, schedule, x0[0], None)


def test_edit_success_reads_the_changed_attribute_and_the_rest():
    """With the shipped judge (100% right on clean renders): the true re-render of a colour edit succeeds; the
    unedited image keeps the rest but misses the target; a colour edit that also moved the background does not
    keep the rest."""
    from coursekit import zoo

    judge, world = zoo.load("shapes-classifier"), ShapesWorld(resolution=32, max_objects=1)
    scenes = world.sample(8, seed=5)
    target = scenes.change(0, colour=(scenes.colour[:, 0] + 1) % 6)
    edited, unedited = world.render(target)[0], world.render(scenes)[0]
    assert all(v.all() for v in edit_success(judge, edited, target, "colour").values())
    missed = edit_success(judge, unedited, target, "colour")
    assert not missed["target"].any() and missed["kept"].all()
    both = target.change(background=(target.background + 1) % 3)
    assert not edit_success(judge, world.render(both)[0], target, "colour")["kept"].any()
    with pytest.raises(ValueError, match="^changed"):
        edit_success(judge, edited, target, "joint")


def test_swapped_reading_finds_two_objects_drawn_with_each_others_attribute():
    """With the shipped judge: a two-object scene rendered with its objects' colours exchanged reads as a colour
    swap (and no other); the scene itself, a one-object scene and two objects of one colour never do."""
    from dataclasses import replace

    from coursekit import zoo

    judge, world = zoo.load("shapes-classifier"), ShapesWorld(resolution=32, min_objects=2, max_objects=2)
    scenes = world.sample(16, seed=3)
    scenes = scenes[(scenes.colour[:, 0] != scenes.colour[:, 1]).nonzero().flatten().tolist()]
    swapped = replace(scenes, colour=scenes.colour.flip(1))
    found = swapped_reading(judge, world.render(swapped)[0], scenes)
    assert len(scenes) >= 8 and found["colour"].all() and found["any"].all()
    assert not found["shape"].any() and not found["size"].any()
    assert not swapped_reading(judge, world.render(scenes)[0], scenes)["any"].any()
    same = replace(scenes, colour=scenes.colour[:, :1].expand(-1, 2).contiguous())
    assert not swapped_reading(judge, world.render(same)[0], same)["any"].any()
    single = ShapesWorld(resolution=32, max_objects=1).sample(4, seed=3)
    other = single.change(0, colour=(single.colour[:, 0] + 1) % 6)
    assert not swapped_reading(judge, world.render(other)[0], single)["any"].any()
    with pytest.raises(ValueError, match="^scenes"):
        swapped_reading(judge, world.render(single)[0], scenes)


def test_read_scenes_inverts_cell_targets_and_render_distance_scores_renders_near_zero():
    """read_scenes(cell_targets(s)) is s up to slot order and jitter. With the shipped judge, measured on 64 scenes
    (seed 3000, up to three objects): clean renders 0.058 mean RMS from the render of what the judge reads (the objects' jitter, at most
    0.02 of the side), stroke paintings of the same scenes 0.126; a render re-rendered without jitter: 0."""
    from dataclasses import replace

    from coursekit import zoo
    from coursekit.data.strokes import paint_scenes

    scenes = WORLD.sample(64, seed=3000)
    read = read_scenes(cell_targets(scenes))
    assert all(v.all() for v in scene_accuracy(cell_targets(read), scenes).values())
    assert torch.equal(read.num_objects, scenes.num_objects) and not read.jitter.any()
    judge = zoo.load("shapes-classifier")
    still = WORLD.render(replace(scenes, jitter=torch.zeros_like(scenes.jitter)))[0]
    assert render_distance(judge, still).max() < 1e-6
    clean, painted = render_distance(judge, WORLD.render(scenes)[0]), render_distance(judge, paint_scenes(scenes))
    assert clean.mean() < 0.07 and painted.mean() > 1.8 * clean.mean()
    with pytest.raises(ValueError, match="^pred"):
        read_scenes({"presence": torch.zeros(1, 9)})


def test_best_threshold_iou_tries_every_threshold():
    from coursekit.evaluate import best_threshold_iou, mask_iou

    score = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    region = (torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.7).float()
    brute = torch.stack([mask_iou((score >= v).float(), region) for v in score.flatten().tolist()]).amax(0)
    assert torch.allclose(best_threshold_iou(score, region), brute)
    assert (best_threshold_iou(region + 0.1 * score, region) == 1).all()  # a map that ranks the region first
    with pytest.raises(ValueError, match="^region"):
        best_threshold_iou(score, region[:1])


def test_psnr_outside_ignores_the_region():
    from coursekit.evaluate import psnr_outside

    a = torch.zeros(2, 3, 4, 4)
    region = torch.zeros(2, 1, 4, 4)
    region[:, :, :2] = 1
    b = a.clone()
    b[:, :, :2] = 1.0  # changed inside the region only
    assert torch.allclose(psnr_outside(b, a, region), torch.full((2,), 100.0 + 10 * math.log10(4)))
    b[:, :, 2:] += 0.1  # MSE 0.01 outside: 10 log10(4 / 0.01)
    assert torch.allclose(psnr_outside(b, a, region), torch.full((2,), 10 * math.log10(400)))
    with pytest.raises(ValueError, match="^region"):
        psnr_outside(b, a, region[:, :, :2])
