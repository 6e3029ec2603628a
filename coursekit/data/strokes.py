"""Stroke paintings: the guides SDEdit turns into images, each with the scene it means.

A ``Stroke`` is a polyline with a colour and a width, drawn as a paint program draws a brush: round joins
and caps, anti-aliased by drawing at 4x the resolution and averaging down (PIL). ``paint_scenes`` turns any
shapes-world scene into a crude "human" painting of it: a flat background a little off the true colour,
and each object scribbled back and forth inside a wobbly outline, in a colour a little off its own. Every
stroke input therefore has a known intended scene (the one it was painted from), against which SDEdit's
output can be judged. ``paste`` composites a region of one image into another (SDEdit's compositing input).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from .._checks import check_float, check_int, check_mask, check_same_shape, check_tensor, generator_from
from .shapes import BACKGROUNDS, COLOURS, SHAPES, SIZES, Scenes

SUPERSAMPLE = 4


@dataclass(frozen=True)
class Stroke:
    """``points``: ((x, y), ...) in image fractions (0 = left / top, 1 = right / bottom); ``colour``: sRGB in
    [0, 1]; ``width``: the brush's diameter as a fraction of the image side."""

    points: tuple[tuple[float, float], ...]
    colour: tuple[float, float, float]
    width: float = 0.08

    def __post_init__(self):
        points = tuple(tuple(float(v) for v in p) for p in self.points)
        if not points or any(len(p) != 2 for p in points):
            raise ValueError(f"points must be a non-empty sequence of (x, y) pairs, got {self.points!r}")
        if any(not (-0.5 <= v <= 1.5) for p in points for v in p):
            raise ValueError(f"points must lie near the image, in image fractions [-0.5, 1.5], got {points}")
        colour = tuple(float(c) for c in self.colour)
        if len(colour) != 3 or any(not 0 <= c <= 1 for c in colour):
            raise ValueError(f"colour must be 3 sRGB values in [0, 1], got {self.colour!r}")
        if check_float("width", self.width, 0.0) == 0:
            raise ValueError("width must be > 0")
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "colour", colour)


def draw(strokes: Sequence[Stroke], background: Sequence[float] = BACKGROUNDS["white"],
         resolution: int = 32) -> torch.Tensor:
    """The strokes painted in order on a flat ``background`` (sRGB in [0, 1]): an image (3, R, R) in [-1, 1]."""
    R = check_int("resolution", resolution, 8)
    if isinstance(strokes, Stroke) or not all(isinstance(s, Stroke) for s in strokes):
        raise ValueError("strokes must be a sequence of Stroke")
    background = tuple(float(c) for c in background)
    if len(background) != 3 or any(not 0 <= c <= 1 for c in background):
        raise ValueError(f"background must be 3 sRGB values in [0, 1], got {background!r}")
    size = R * SUPERSAMPLE
    image = Image.new("RGB", (size, size), tuple(round(255 * c) for c in background))
    pen = ImageDraw.Draw(image)
    for stroke in strokes:
        _brush(pen, stroke, size, tuple(round(255 * c) for c in stroke.colour))
    small = np.asarray(image.resize((R, R), Image.Resampling.BOX), dtype=np.float32)
    return torch.from_numpy(small).permute(2, 0, 1) / 255 * 2 - 1


def _brush(pen: ImageDraw.ImageDraw, stroke: Stroke, size: int, fill) -> None:
    """One stroke on a ``size``-pixel canvas: the polyline with round joins, and round caps."""
    width = max(1, round(stroke.width * size))
    xy = [(x * size, y * size) for x, y in stroke.points]
    if len(xy) > 1:
        pen.line(xy, fill=fill, width=width, joint="curve")
    for x, y in (xy[0], xy[-1]):
        pen.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=fill)


def paint_over(images: torch.Tensor, strokes: Sequence[Stroke]) -> torch.Tensor:
    """The strokes painted in order over images (B, 3, R, R) in [-1, 1] (a user's edit of an existing image):
    each stroke's anti-aliased coverage blends its colour in; pixels no stroke touches stay exactly as they were."""
    check_tensor("images", images, ndim=4)
    if images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise ValueError(f"images must be square with 3 channels, got shape {tuple(images.shape)}")
    if isinstance(strokes, Stroke) or not strokes or not all(isinstance(s, Stroke) for s in strokes):
        raise ValueError("strokes must be a non-empty sequence of Stroke")
    R = images.shape[-1]
    out = images.clone()
    for stroke in strokes:
        canvas = Image.new("L", (R * SUPERSAMPLE, R * SUPERSAMPLE), 0)
        _brush(ImageDraw.Draw(canvas), stroke, R * SUPERSAMPLE, 255)
        alpha = torch.from_numpy(np.asarray(canvas.resize((R, R), Image.Resampling.BOX), dtype=np.float32) / 255)
        colour = torch.tensor(stroke.colour, dtype=images.dtype)[:, None, None] * 2 - 1
        out = torch.where(alpha > 0, out * (1 - alpha) + colour * alpha, out)
    return out


def _outline(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """The shape's outline as polygon vertices (image fractions, y down), matching ``shapes``' geometry."""
    if shape == "circle":
        angles = [2 * math.pi * k / 12 for k in range(12)]
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in angles]
    if shape == "square":
        h = 0.9 * r
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    k = math.sqrt(3.0)  # triangle, apex up, side 2r, centred on its bounding box
    top, bottom = cy - r * k / 2, cy + r * k / 2
    return [(cx, top), (cx + r, bottom), (cx - r, bottom)]


def _span(polygon: list[tuple[float, float]], y: float) -> tuple[float, float] | None:
    """Leftmost and rightmost x where the horizontal line at ``y`` crosses the polygon."""
    xs = []
    for (x1, y1), (x2, y2) in zip(polygon, polygon[1:] + polygon[:1]):
        if (y1 - y) * (y2 - y) <= 0 and y1 != y2:
            xs.append(x1 + (y - y1) * (x2 - x1) / (y2 - y1))
    return (min(xs), max(xs)) if xs else None


def _jitter(colour: Sequence[float], amount: float, g: torch.Generator) -> tuple[float, float, float]:
    shift = (torch.rand(3, generator=g) * 2 - 1) * amount
    return tuple(min(1.0, max(0.0, c + s)) for c, s in zip(colour, shift.tolist()))


def scene_strokes(scenes: Scenes, index: int, seed: int = 0, wobble: float = 0.2, colour_jitter: float = 0.08,
                  width: float = 0.07) -> tuple[tuple[float, float, float], list[Stroke]]:
    """(background, strokes) of a crude painting of scene ``index``: per object, a back-and-forth scribble
    filling an outline whose vertices are moved by up to ``wobble`` of the size, then the outline itself."""
    if not isinstance(scenes, Scenes):
        raise ValueError(f"scenes must be Scenes, got {type(scenes).__name__}")
    check_int("index", index, 0, len(scenes))
    check_float("wobble", wobble, 0.0, 1.0)
    check_float("colour_jitter", colour_jitter, 0.0, 1.0)
    g = generator_from(seed * 100_003 + index, None)
    background = _jitter(BACKGROUNDS[tuple(BACKGROUNDS)[int(scenes.background[index])]], colour_jitter, g)
    strokes = []
    for n in range(scenes.present.shape[1]):
        if not bool(scenes.present[index, n]):
            continue
        position = int(scenes.position[index, n])
        cx = (position % 3 + 0.5) / 3 + float(scenes.jitter[index, n, 0])
        cy = (position // 3 + 0.5) / 3 + float(scenes.jitter[index, n, 1])
        r = SIZES[tuple(SIZES)[int(scenes.size[index, n])]]
        polygon = []  # inset by a quarter width: the outline stroke's half width then ends on the true edge
        for x, y in _outline(SHAPES[int(scenes.shape[index, n])], cx, cy, r - width / 4):
            move = (torch.rand(2, generator=g) * 2 - 1) * wobble * r
            polygon.append((x + float(move[0]), y + float(move[1])))
        colour = _jitter(COLOURS[tuple(COLOURS)[int(scenes.colour[index, n])]], colour_jitter, g)
        ys = [y for _, y in polygon]
        fill, row, top, bottom = [], 0, min(ys) + width / 3, max(ys) - width / 3
        for k in range(max(1, math.ceil((bottom - top) / (0.6 * width))) + 1):
            y = top + (bottom - top) * k / max(1, math.ceil((bottom - top) / (0.6 * width)))
            span = _span(polygon, y)
            if span is not None:
                left, right = span[0] + width / 3, span[1] - width / 3
                fill += [(left, y), (right, y)] if row % 2 == 0 else [(right, y), (left, y)]
                row += 1
        if fill:
            strokes.append(Stroke(tuple(fill), colour, width))
        strokes.append(Stroke(tuple(polygon + polygon[:1]), colour, width / 2))
    return background, strokes


def paint_scenes(scenes: Scenes, resolution: int = 32, seed: int = 0, **style) -> torch.Tensor:
    """Crude stroke paintings (B, 3, R, R) in [-1, 1] of the scenes (``scene_strokes``; ``style``: its wobble,
    colour_jitter and width); the same seed paints the same strokes."""
    check_int("seed", seed, 0)
    paintings = []
    for b in range(len(scenes) if isinstance(scenes, Scenes) else 0):
        background, strokes = scene_strokes(scenes, b, seed, **style)
        paintings.append(draw(strokes, background, resolution))
    if not paintings:
        raise ValueError(f"scenes must be non-empty Scenes, got {scenes!r}")
    return torch.stack(paintings)


def _blob(cx: float, cy: float, r: float, colour: str) -> Stroke:
    """A filled round blob as one spiral stroke (what a student draws with a mouse)."""
    turns = [(cx + r * t / 24 * math.cos(t), cy + r * t / 24 * math.sin(t)) for t in np.linspace(0, 24, 40).tolist()]
    return Stroke(tuple(turns), COLOURS[colour], 0.09)


PRESETS: dict[str, tuple[tuple[float, float, float], list[Stroke]]] = {
    "red blob in the center on white": (BACKGROUNDS["white"], [_blob(0.5, 0.5, 0.12, "red")]),
    "blue bar at the top on black": (BACKGROUNDS["black"], [Stroke(((0.35, 0.17), (0.65, 0.17)), COLOURS["blue"], 0.16)]),
    "yellow triangle on the left on gray": (BACKGROUNDS["gray"], [Stroke(
        ((0.17, 0.38), (0.28, 0.62), (0.06, 0.62), (0.17, 0.38), (0.17, 0.55)), COLOURS["yellow"], 0.09)]),
    "green and purple blobs on white": (BACKGROUNDS["white"], [_blob(0.17, 0.17, 0.1, "green"),
                                                               _blob(0.83, 0.83, 0.1, "purple")]),
}


def random_strokes(n: int, seed: int = 0, length: float = 0.2, width: float = 0.1) -> list[Stroke]:
    """``n`` short strokes, one per edit: a course colour, a random place, a random direction and ``length``
    (image fractions): the touch-ups a user paints over an image (``paint_over``)."""
    check_int("n", n, 1)
    check_float("length", length, 0.0, 1.0)
    g = generator_from(seed, None)
    out = []
    for _ in range(n):
        colour = tuple(COLOURS)[int(torch.randint(len(COLOURS), (), generator=g))]
        x, y = (0.15 + 0.7 * torch.rand(2, generator=g)).tolist()
        angle = float(torch.rand((), generator=g)) * 2 * math.pi
        dx, dy = length / 2 * math.cos(angle), length / 2 * math.sin(angle)
        out.append(Stroke(((x - dx, y - dy), (x + dx, y + dy)), COLOURS[colour], width))
    return out


def paste(target: torch.Tensor, source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``source`` where ``mask`` is 1, ``target`` where it is 0 (values between blend): images (B, C, R, R),
    mask (B or 1, 1, R, R) in [0, 1]. A crude composite: SDEdit with the same mask makes it coherent."""
    check_tensor("target", target, ndim=4)
    check_same_shape("source", source, "target", target)
    check_mask("mask", mask, target.shape[0], tuple(target.shape[2:]))
    return mask * source + (1 - mask) * target


def pasted_objects(world, scenes: Scenes, seed: int = 0, margin: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Crude composites with a known answer: each scene's second object cut, with ``margin`` pixels around it, out
    of the same scene rendered on another background (drawn from ``seed``) and pasted back (a patch of the wrong
    background around the object). Returns (the true scenes' images, the composites, the patch mask (B, 1, R, R))."""
    check_int("margin", margin, 0)
    if not isinstance(scenes, Scenes) or scenes.present.shape[1] < 2 or not bool(scenes.present[:, 1].all()):
        raise ValueError("scenes must be Scenes with a second object in every scene (min_objects=2)")
    truth, cover = world.render(scenes)
    g = generator_from(seed, None)
    other = (scenes.background + torch.randint(1, len(BACKGROUNDS), (len(scenes),), generator=g)) % len(BACKGROUNDS)
    patch = F.max_pool2d((cover[:, 1:2] > 0).float(), 2 * margin + 1, stride=1, padding=margin)
    return truth, paste(truth, world.render(scenes.change(background=other))[0], patch), patch
