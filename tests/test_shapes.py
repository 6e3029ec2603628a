"""The shapes world: deterministic, anti-aliased, masks that explain the pixels, ground-truth edits."""

import math

import pytest
import torch

from coursekit.data import BACKGROUNDS, COLOURS, POSITIONS, SHAPES, SIZES, ShapesWorld, parse_caption
from coursekit.data.shapes import JITTER

WORLD = ShapesWorld(resolution=32, min_objects=1, max_objects=3)


def colour(names, index):
    return torch.tensor(list(names.values()))[index] * 2 - 1  # the [-1, 1] image range


def test_same_seed_same_scenes_and_images():
    a, b, c = WORLD.sample(64, seed=3), WORLD.sample(64, seed=3), WORLD.sample(64, seed=4)
    assert torch.equal(WORLD.render(a)[0], WORLD.render(b)[0]) and a.captions() == b.captions()
    assert not torch.equal(WORLD.render(a)[0], WORLD.render(c)[0])


def test_images_are_exactly_background_plus_masked_object_colours():
    """image = bg (1 - sum_k m_k) + sum_k c_k m_k: the masks account for every pixel."""
    scenes = WORLD.sample(256, seed=0)
    image, masks = WORLD.render(scenes)
    assert image.shape == (256, 3, 32, 32) and masks.shape == (256, 3, 32, 32)
    assert image.min() >= -1 and image.max() <= 1 and masks.min() >= 0 and masks.max() <= 1
    bg = colour(BACKGROUNDS, scenes.background)[:, :, None, None]
    objects = torch.einsum("bnhw,bnc->bchw", masks, colour(COLOURS, scenes.colour))
    want = bg * (1 - masks.sum(1, keepdim=True)) + objects
    assert (image - want).abs().max() < 1e-5
    # absent objects have empty masks; present ones have a solid core and a one-pixel soft edge
    # (measured over three seeds: >= 4 solid pixels, 20-23% solid at worst, 47-48% on average at 32 px)
    assert masks[~scenes.present].sum() == 0
    solid = ((masks == 1).sum((2, 3)).float() / (masks > 0).sum((2, 3)).clamp(min=1))[scenes.present]
    assert (masks == 1).sum((2, 3))[scenes.present].min() >= 3
    assert solid.min() > 0.15 and 0.4 < solid.mean() < 0.55


@pytest.mark.parametrize("resolution, tol", [(32, 0.08), (128, 0.01)])
def test_anti_aliased_coverage_equals_the_shapes_area(resolution, tol):
    """Sum of coverage = the analytic area (measured worst error: 5.5% at 32 px, 0.6% at 128 px)."""
    world = ShapesWorld(resolution=resolution, max_objects=1, min_objects=1)
    scenes = world.sample(400, seed=1)
    _, masks = world.render(scenes)
    r = torch.tensor(list(SIZES.values()))[scenes.size[:, 0]]
    area_per_r2 = torch.tensor([math.pi, (2 * 0.9) ** 2, math.sqrt(3), 2.0])[scenes.shape[:, 0]]
    want = area_per_r2 * r**2 * resolution**2
    got = masks[:, 0].sum((1, 2))
    assert ((got - want).abs() / want).max() < tol


def test_objects_sit_in_their_named_cells():
    scenes = WORLD.sample(256, seed=2)
    _, masks = WORLD.render(scenes)
    grid = (torch.arange(32) + 0.5) / 32
    for b, n in scenes.present.nonzero().tolist():
        m = masks[b, n]
        cy, cx = (m.sum(1) * grid).sum() / m.sum(), (m.sum(0) * grid).sum() / m.sum()
        row, col = divmod(int(scenes.position[b, n]), 3)
        # triangles' centroids sit lower than their box centres: allow 0.06 of the image
        assert abs(cx - (col + 0.5) / 3) < JITTER + 0.02 and abs(cy - (row + 0.5) / 3) < JITTER + 0.06


@pytest.mark.parametrize("attribute, value", [("colour", "blue"), ("shape", "triangle"), ("size", "large"),
                                              ("position", None)])
def test_a_changed_attribute_changes_pixels_only_inside_the_old_and_new_masks(attribute, value):
    scenes = WORLD.sample(128, seed=5)
    scenes = scenes[scenes.num_objects < 3]
    if value is None:  # move object 0 to a cell no other object uses
        used = torch.zeros(len(scenes), 9, dtype=torch.bool).scatter_(1, torch.where(
            scenes.present, scenes.position, scenes.position[:, :1]), True)
        value = (~used).float().argmax(1)
    edited = scenes.change(0, **{attribute: value})
    before, m_before = WORLD.render(scenes)
    after, m_after = WORLD.render(edited)
    union = ((m_before[:, 0] > 0) | (m_after[:, 0] > 0))[:, None].expand_as(before)
    assert torch.equal(before[~union], after[~union])
    changed = (before != after).any(1).flatten(1).any(1)
    # every scene whose object 0 really changed shows a difference (colour/shape/size may repeat)
    old = getattr(scenes, attribute)[:, 0]
    assert torch.equal(changed, old != getattr(edited, attribute)[:, 0])
    # the other objects are untouched
    assert torch.equal(m_before[:, 1:], m_after[:, 1:])


def test_background_change_keeps_object_pixels():
    scenes = WORLD.sample(64, seed=6)
    before, masks = WORLD.render(scenes)
    after, _ = WORLD.render(scenes.change(background="black"))
    inside = (masks.sum(1, keepdim=True) == 1).expand_as(before)
    assert torch.equal(before[inside], after[inside])


def test_captions_parse_back_to_the_attributes():
    scenes = WORLD.sample(500, seed=7)
    for b, caption in enumerate(scenes.captions()):
        parsed = parse_caption(caption)
        assert parsed["background"] == list(BACKGROUNDS)[scenes.background[b]]
        present = scenes.present[b].nonzero()[:, 0].tolist()
        assert len(parsed["objects"]) == len(present)
        for n, obj in zip(present, parsed["objects"]):
            assert obj == {"shape": SHAPES[scenes.shape[b, n]], "colour": list(COLOURS)[scenes.colour[b, n]],
                           "size": list(SIZES)[scenes.size[b, n]], "position": POSITIONS[scenes.position[b, n]]}
    labels = scenes.labels()
    assert (labels["shape"][~scenes.present] == -1).all() and (labels["colour"][scenes.present] >= 0).all()


def test_sampling_covers_every_attribute_value():
    scenes = WORLD.sample(2000, seed=8)
    for name, values in (("shape", SHAPES), ("colour", COLOURS), ("size", SIZES), ("position", POSITIONS)):
        counts = torch.bincount(getattr(scenes, name)[scenes.present], minlength=len(values))
        assert counts.min() > 0.5 * counts.float().mean()
    assert set(scenes.num_objects.tolist()) == {1, 2, 3}


@pytest.mark.parametrize("call, name", [
    (lambda: ShapesWorld(resolution=4), "resolution"),
    (lambda: ShapesWorld(max_objects=10), "max_objects"),
    (lambda: ShapesWorld(min_objects=3, max_objects=2), "min_objects"),
    (lambda: WORLD.sample(0, seed=0), "n"),
    (lambda: WORLD.sample(4), "give exactly one"),
    (lambda: WORLD.render("scene"), "scenes"),
    (lambda: WORLD.sample(4, seed=0).change(0, colour="teal"), "colour"),
    (lambda: WORLD.sample(4, seed=0).change(0, texture="dots"), "attribute"),
    (lambda: WORLD.sample(4, seed=0).change(0, colour="red", size="small"), "change"),
    (lambda: WORLD.sample(4, seed=0).change(5, colour="red"), "obj"),
    (lambda: WORLD.sample(4, seed=0).change(None, colour="red"), "obj"),
    (lambda: ShapesWorld(min_objects=1, max_objects=2).sample(64, seed=0).change(1, colour="red"), "obj"),
    (lambda: ShapesWorld(min_objects=2, max_objects=2).sample(64, seed=0).change(
        0, position=ShapesWorld(min_objects=2, max_objects=2).sample(64, seed=0).position[:, 1]), "position"),
    (lambda: parse_caption("a red circle"), "caption"),
    (lambda: parse_caption("a huge red circle in the center on a white background"), "caption"),
])
def test_bad_input_raises_value_error(call, name):
    with pytest.raises(ValueError, match=rf"^{name}"):
        call()


def test_the_accelerator_path_of_the_coverage_equals_the_cpu_path():
    """On an accelerator every object gets all four distances and keeps its own (no boolean masks, which
    would wait for the device); on the CPU each shape's distance is computed for its objects only."""
    from coursekit.data.shapes import _coverage

    scenes = WORLD.sample(256, seed=4)
    assert torch.equal(_coverage(scenes, 32, masked=False), _coverage(scenes, 32, masked=True))



def test_attribute_edits_change_one_attribute_and_only_the_region():
    from coursekit.data import CHANGES, attribute_edits

    images, edits = attribute_edits(9, seed=5)
    assert [e.change for e in edits] == list(CHANGES) and images.shape == (9, 3, 32, 32)
    for e in edits:
        assert e.index.tolist() == list(range(CHANGES.index(e.change), 9, 3))
        before, after = getattr(e.scenes, e.change)[:, 0], getattr(e.edited, e.change)[:, 0]
        assert (before != after).all()
        for other in set(CHANGES) - {e.change}:
            assert torch.equal(getattr(e.scenes, other), getattr(e.edited, other))
        outside = (1 - e.region).bool().expand(-1, 3, -1, -1)
        assert torch.equal(e.truth[outside], images[e.index][outside])  # nothing else moves
        assert ((e.truth - images[e.index]).abs().amax(dim=(1, 2, 3)) > 0.1).all()  # and the object does
    with pytest.raises(ValueError, match="^n must be"):
        attribute_edits(2, seed=0)


def test_attribute_edits_can_set_each_changes_object_counts():
    from coursekit.data import attribute_edits

    images, edits = attribute_edits(12, seed=7000, objects=(1, 2))
    for e in edits:
        assert e.scenes.num_objects.tolist() == e.edited.num_objects.tolist() == [1, 2, 1, 2]
    assert torch.equal(edits[0].scenes.colour, attribute_edits(12, seed=7000)[1][0].scenes.colour)  # the same draws
    for bad in ((), (3,), [1, 2]):
        with pytest.raises(ValueError, match="^objects"):
            attribute_edits(6, seed=0, objects=bad)


def test_attribute_vector_round_trip():
    from coursekit.data import read_attribute_vector

    scenes = ShapesWorld(resolution=32, max_objects=1).sample(64, seed=3)
    y = scenes.attribute_vector()
    assert y.shape == (64, 24) and set(y.unique().tolist()) == {-1.0, 1.0} and (y == 1).sum(1).eq(5).all()
    read, labels = read_attribute_vector(y + 0.3 * torch.randn(y.shape, generator=torch.Generator().manual_seed(0))), scenes.labels()
    for name in ("shape", "colour", "size", "position"):
        assert torch.equal(read[name], labels[name][:, 0])
    assert torch.equal(read["background"], labels["background"])
    with pytest.raises(ValueError, match="one object each"):
        ShapesWorld(resolution=32, min_objects=2, max_objects=2).sample(2, seed=0).attribute_vector()
    with pytest.raises(ValueError, match="y must have shape"):
        read_attribute_vector(y[:, :20])
