"""Edits with a known answer: a scene, one attribute of its first object changed, and the scene re-rendered.

DiffEdit, Imagic and the method comparison (``coursekit report diffedit`` / ``editing_methods``, lessons 07 and 08)
are scored against these: the ground truth is the edited scene rendered, the true edit region is where the object
is before or after the change.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .._checks import check_int
from .shapes import ATTRIBUTES, Scenes, ShapesWorld

CHANGES = ("colour", "shape", "size")


@dataclass
class AttributeEdits:
    """One kind of edit on some scenes: ``change`` (an attribute), ``index`` (which of the sampled scenes),
    ``scenes`` and ``edited`` (before and after), ``truth`` (the edited scenes rendered, (B, 3, R, R)) and ``region``
    ((B, 1, R, R), 1 where the first object covers any of a pixel before or after)."""

    change: str
    index: torch.Tensor
    scenes: Scenes
    edited: Scenes
    truth: torch.Tensor
    region: torch.Tensor


def attribute_edits(n: int, seed: int, world: ShapesWorld | None = None,
                    objects: tuple[int, ...] | None = None) -> tuple[torch.Tensor, list[AttributeEdits]]:
    """``n`` scenes of ``world`` (default: 32x32, at most two objects) sampled with ``seed``; scenes 0, 3, 6, ... have
    their first object's colour changed to another colour, scenes 1, 4, ... its shape, 2, 5, ... its size (the new
    value drawn with ``seed``). ``objects``, if given, sets the object counts instead of drawing them: each change's
    scenes hold ``objects[0]``, ``objects[1]``, ... objects in turn (``(1, 2)``: half the edits of every kind on
    one-object scenes, half on two-object ones). Returns the original images (n, 3, R, R) and one ``AttributeEdits``
    per change."""
    check_int("n", n, 3)
    world = world or ShapesWorld(resolution=32, max_objects=2)
    scenes = world.sample(n, seed=check_int("seed", seed, 0))
    if objects is not None:
        if not isinstance(objects, tuple) or not objects:
            raise ValueError(f"objects must be a non-empty tuple of object counts, got {objects!r}")
        for k in objects:
            check_int("objects", k, world.min_objects, world.max_objects + 1)
        count = torch.tensor([objects[(i // len(CHANGES)) % len(objects)] for i in range(n)], device=scenes.present.device)
        scenes = replace(scenes, present=torch.arange(world.max_objects, device=count.device)[None, :] < count[:, None])
    images, cover = world.render(scenes)
    g = torch.Generator().manual_seed(seed)
    edits = []
    for k, change in enumerate(CHANGES):
        index = torch.arange(k, n, 3)
        part = scenes[index.tolist()]
        values = len(ATTRIBUTES[change])
        new = (getattr(part, change)[:, 0] + torch.randint(1, values, (len(index),), generator=g)) % values
        edited = part.change(0, **{change: new})
        truth, after = world.render(edited)
        region = ((cover[index, 0] > 0) | (after[:, 0] > 0))[:, None].float()
        edits.append(AttributeEdits(change, index, part, edited, truth, region))
    return images, edits
