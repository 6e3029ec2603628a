"""The shapes world: procedural captioned images whose every edit has a ground-truth answer.

A scene is a background colour and 1..max_objects objects, each a shape of some colour and size
sitting in its own cell of a 3 x 3 grid (so objects never overlap, and each caption word is
unambiguous). Rendering is vectorised over the batch and anti-aliased: each object's coverage is
alpha = clamp(0.5 - d, 0, 1) with d its signed distance in pixels (the box-filter approximation of
Green, "Improved alpha-tested magnification", SIGGRAPH 2007). Objects are composited in order with
the "over" operator (Porter & Duff 1984), which also gives each object's visible mask.

Images are float32 in [-1, 1] (the models' data range), shape (B, 3, R, R); masks are the visible
coverage in [0, 1], shape (B, max_objects, R, R). ``Scenes.change`` re-renders the same scene with
one attribute changed: the ground truth for an edit.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, fields, replace

import torch

from .._checks import check_choice, check_float, check_generator, check_int, check_tensor, generator_from

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = {  # sRGB in [0, 1]: saturated, far apart, all distinct from every background
    "red": (0.86, 0.12, 0.12),
    "green": (0.15, 0.68, 0.22),
    "blue": (0.13, 0.33, 0.90),
    "yellow": (0.97, 0.86, 0.12),
    "purple": (0.58, 0.20, 0.78),
    "orange": (0.97, 0.52, 0.08),
}
SIZES = {"small": 0.09, "large": 0.13}  # half-extent of the shape, as a fraction of the image side
BACKGROUNDS = {"white": (0.96, 0.96, 0.96), "gray": (0.50, 0.50, 0.50), "black": (0.06, 0.06, 0.06)}
# Cell k of the 3 x 3 grid is row k // 3, column k % 3; the phrase that names it in captions.
POSITIONS = (
    "at the top left", "at the top", "at the top right",
    "on the left", "in the center", "on the right",
    "at the bottom left", "at the bottom", "at the bottom right",
)
JITTER = 0.02  # an object's centre moves at most this far (image fractions) from its cell's centre
ATTRIBUTES = {"shape": SHAPES, "colour": tuple(COLOURS), "size": tuple(SIZES), "position": POSITIONS}


@dataclass(frozen=True)
class Scenes:
    """A batch of B scenes with up to N objects each; object attributes are (B, N) tensors.

    shape, colour, size, position: long indices into SHAPES, COLOURS, SIZES, POSITIONS.
    jitter: (B, N, 2) float offset of each centre from its cell centre (x, y), in image fractions.
    present: (B, N) bool, which object slots are used (present objects come first).
    background: (B,) long index into BACKGROUNDS.
    """

    shape: torch.Tensor
    colour: torch.Tensor
    size: torch.Tensor
    position: torch.Tensor
    jitter: torch.Tensor
    present: torch.Tensor
    background: torch.Tensor

    def __len__(self) -> int:
        return self.background.shape[0]

    def __getitem__(self, index) -> Scenes:
        """A sub-batch: ``scenes[2:5]``, ``scenes[[0, 3]]``; an int keeps a batch of one."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return Scenes(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @property
    def num_objects(self) -> torch.Tensor:
        """(B,) number of objects in each scene."""
        return self.present.sum(1)

    def change(self, obj: int | None = None, **attribute) -> Scenes:
        """The same scenes with one attribute changed in every scene, e.g. ``change(0, colour="blue")``
        (object 0 becomes blue) or ``change(background="black")``.

        The value is a name or a (B,) long tensor of indices. Every scene must have object ``obj``,
        and a new position must be free in every scene.
        """
        if len(attribute) != 1:
            raise ValueError(f"change takes exactly one attribute, got {sorted(attribute)}")
        (name, value), = attribute.items()
        check_choice("attribute", name, (*ATTRIBUTES, "background"))
        names = tuple(BACKGROUNDS) if name == "background" else ATTRIBUTES[name]
        value = _as_index(name, value, names, len(self))
        if name == "background":
            if obj is not None:
                raise ValueError("obj must be None when changing the background")
            return replace(self, background=value)
        N = self.present.shape[1]
        if obj is None:
            raise ValueError(f"obj must be an object index in [0, {N}) when changing {name}")
        check_int("obj", obj, 0, N)
        if not bool(self.present[:, obj].all()):
            raise ValueError(f"obj {obj} is not present in every scene (scenes hold {self.num_objects.tolist()} objects)")
        new = getattr(self, name).clone()
        new[:, obj] = value
        if name == "position":
            others = self.present.clone()
            others[:, obj] = False
            if bool(((self.position == value[:, None]) & others).any()):
                raise ValueError("position is already taken by another object in some scene")
        return replace(self, **{name: new})

    def labels(self) -> dict[str, torch.Tensor]:
        """Attribute labels: shape, colour, size, position (B, N) with -1 for absent objects, and
        background (B,)."""
        out = {k: torch.where(self.present, getattr(self, k), -1) for k in ATTRIBUTES}
        out["background"] = self.background
        return out

    def attribute_vector(self) -> torch.Tensor:
        """A one-object scene's caption as numbers (B, 24): one block per attribute of ``VECTOR_PARTS``, +1 at the
        scene's value and -1 elsewhere (UniDiffuser's text modality in ``coursekit report unidiffuser_shapes``).
        ``read_attribute_vector`` reads it back."""
        if not bool((self.num_objects == 1).all()):
            raise ValueError(f"scenes must hold one object each for an attribute vector, got {self.num_objects.tolist()}")
        labels = self.labels()
        index = [labels[k][:, 0] if k != "background" else labels[k] for k in VECTOR_PARTS]
        blocks = [torch.nn.functional.one_hot(i, n) for i, n in zip(index, _vector_sizes())]
        return torch.cat(blocks, 1).float() * 2 - 1

    def captions(self, omit: dict[str, torch.Tensor] | None = None) -> list[str]:
        """One caption per scene, e.g. "a large red circle at the top left and a small blue square
        in the center on a gray background".

        ``omit`` (from ``omissions``) leaves attributes out: "a red at the top left on a gray background" (size and
        shape left out), "a large red circle" (position and background). Omitted words are simply missing, so the
        vocabulary does not change."""
        if omit is not None:
            _check_omit(omit, self)
        out = []
        for b in range(len(self)):
            phrases = []
            for n in range(self.present.shape[1]):
                if not self.present[b, n]:
                    continue
                words = {"size": SIZES_L[self.size[b, n]], "colour": COLOURS_L[self.colour[b, n]],
                         "shape": SHAPES[self.shape[b, n]], "position": POSITIONS[self.position[b, n]]}
                if omit is not None:
                    words = {k: ("" if bool(omit[k][b, n]) else w) for k, w in words.items()}
                phrases.append(_object_phrase(**words))
            tail = "" if omit is not None and bool(omit["background"][b]) else \
                f" on a {BACKGROUNDS_L[self.background[b]]} background"
            out.append(" and ".join(phrases) + tail)
        return out


SIZES_L, COLOURS_L, BACKGROUNDS_L = tuple(SIZES), tuple(COLOURS), tuple(BACKGROUNDS)


def _object_phrase(size: str, colour: str, shape: str, position: str) -> str:
    return " ".join(w for w in ("a", size, colour, shape, position) if w)


CAPTION_PARTS = ("size", "colour", "shape", "position", "background")


def omissions(scenes: Scenes, p: float, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Which words to leave out of each caption, each attribute phrase independently with probability ``p``: (B, N)
    bool for size, colour, shape and position of every object and (B,) for the background, drawn by ``generator``
    on its device. Training on such captions (beside the empty one of classifier-free guidance) teaches a model
    what a caption that does not say an attribute means: draw any value of it."""
    if not isinstance(scenes, Scenes):
        raise ValueError(f"scenes must be Scenes, got {type(scenes).__name__}")
    p = check_float("p", p, 0.0, 1.0)
    check_generator("generator", generator)
    on = dict(generator=generator, device=generator.device if generator is not None else scenes.shape.device)
    B, N = scenes.shape.shape
    draw = torch.rand(B, N, 4, **on) < p
    return {**{k: draw[..., i] for i, k in enumerate(CAPTION_PARTS[:4])}, "background": torch.rand(B, **on) < p}


def _check_omit(omit, scenes: Scenes) -> None:
    B, N = scenes.shape.shape
    if not isinstance(omit, dict) or set(omit) != set(CAPTION_PARTS):
        raise ValueError(f"omit must be a dict with keys {list(CAPTION_PARTS)} (see omissions), got "
                         f"{sorted(omit) if isinstance(omit, dict) else type(omit).__name__}")
    for k, v in omit.items():
        want = (B,) if k == "background" else (B, N)
        if not isinstance(v, torch.Tensor) or v.dtype != torch.bool or tuple(v.shape) != want:
            raise ValueError(f"omit[{k!r}] must be a bool tensor of shape {want}, got "
                             f"{getattr(v, 'dtype', type(v).__name__)} {tuple(getattr(v, 'shape', ()))}")


_OBJECT = re.compile(
    rf"a ({'|'.join(SIZES)}) ({'|'.join(COLOURS)}) ({'|'.join(SHAPES)}) ({'|'.join(POSITIONS)})"
)
_CAPTION = re.compile(rf"(.+) on a ({'|'.join(BACKGROUNDS)}) background")


def parse_caption(caption: str) -> dict:
    """Read a shapes-world caption back into attributes:
    ``{"objects": [{"shape", "colour", "size", "position"}, ...], "background": name}``.

    Raises ValueError for text that is not a caption of this world.
    """
    if not isinstance(caption, str):
        raise ValueError(f"caption must be a str, got {type(caption).__name__}")
    m = _CAPTION.fullmatch(caption)
    if m is None:
        raise ValueError(f"caption must end with 'on a <{'|'.join(BACKGROUNDS)}> background', got {caption!r}")
    objects = []
    for phrase in m.group(1).split(" and "):
        o = _OBJECT.fullmatch(phrase)
        if o is None:
            raise ValueError(f"caption has an object phrase that is not 'a <size> <colour> <shape> <position>': {phrase!r}")
        objects.append(dict(size=o.group(1), colour=o.group(2), shape=o.group(3), position=o.group(4)))
    return {"objects": objects, "background": m.group(2)}


@dataclass(frozen=True)
class ShapesWorld:
    """The generator: ``resolution`` x ``resolution`` images with min_objects..max_objects objects."""

    resolution: int = 32
    min_objects: int = 1
    max_objects: int = 2

    def __post_init__(self):
        check_int("resolution", self.resolution, 8)
        check_int("max_objects", self.max_objects, 1, len(POSITIONS) + 1)
        check_int("min_objects", self.min_objects, 1, self.max_objects + 1)

    def sample(self, n: int, seed: int | None = None, generator: torch.Generator | None = None) -> Scenes:
        """``n`` random scenes; the same ``seed`` (or generator state) gives the same scenes. The scenes
        live on the generator's device (a CUDA generator draws them on the GPU, with no host copy)."""
        check_int("n", n, 1)
        g, N = generator_from(seed, generator), self.max_objects
        on = dict(generator=g, device=g.device)
        count = torch.randint(self.min_objects, N + 1, (n,), **on)
        # distinct cells: the first N of a random permutation of the 9 cells
        position = torch.rand(n, len(POSITIONS), **on).argsort(dim=1)[:, :N]
        return Scenes(
            shape=torch.randint(len(SHAPES), (n, N), **on),
            colour=torch.randint(len(COLOURS), (n, N), **on),
            size=torch.randint(len(SIZES), (n, N), **on),
            position=position,
            jitter=(torch.rand(n, N, 2, **on) * 2 - 1) * JITTER,
            present=torch.arange(N, device=g.device)[None, :] < count[:, None],
            background=torch.randint(len(BACKGROUNDS), (n,), **on),
        )

    def render(self, scenes: Scenes) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 3, R, R) in [-1, 1] and visible object masks (B, N, R, R) in [0, 1], on the
        scenes' device."""
        if not isinstance(scenes, Scenes):
            raise ValueError(f"scenes must be Scenes, got {type(scenes).__name__}")
        R, table = self.resolution, _tables(scenes.background.device)
        alpha = _coverage(scenes, R) * scenes.present[:, :, None, None]  # (B, N, R, R)
        palette = table["colour"]
        image = table["background"][scenes.background][:, :, None, None].expand(-1, 3, R, R)
        masks = torch.empty_like(alpha)
        for n in range(alpha.shape[1]):  # "over" compositing, object n on top of objects < n
            a = alpha[:, n : n + 1]  # (B, 1, R, R)
            image = image * (1 - a) + palette[scenes.colour[:, n]][:, :, None, None] * a
            masks[:, :n] *= 1 - a
            masks[:, n] = a[:, 0]
        return image * 2 - 1, masks

    def images(self, n: int, seed: int) -> tuple[torch.Tensor, list[str]]:
        """Convenience: ``n`` images and their captions from ``seed``."""
        scenes = self.sample(n, seed)
        return self.render(scenes)[0], scenes.captions()


VECTOR_PARTS = ("shape", "colour", "size", "position", "background")


def _vector_sizes() -> list[int]:
    return [len(BACKGROUNDS) if k == "background" else len(ATTRIBUTES[k]) for k in VECTOR_PARTS]


def read_attribute_vector(y: torch.Tensor) -> dict[str, torch.Tensor]:
    """The attribute indices (B,) an attribute vector (B, 24) names, as ``Scenes.attribute_vector`` writes it:
    the largest entry of each block (so a sampled, noisy vector reads as its nearest caption)."""
    sizes = _vector_sizes()
    check_tensor("y", y, shape=(None, sum(sizes)))
    return {k: block.argmax(1) for k, block in zip(VECTOR_PARTS, y.split(sizes, 1))}


def _as_index(name: str, value, names: tuple, B: int) -> torch.Tensor:
    if isinstance(value, str):
        check_choice(name, value, names)
        return torch.full((B,), names.index(value), dtype=torch.long)
    if not isinstance(value, torch.Tensor) or value.shape != (B,) or value.is_floating_point():
        raise ValueError(f"{name} must be one of {list(names)} or a ({B},) long tensor of indices")
    if int(value.min()) < 0 or int(value.max()) >= len(names):
        raise ValueError(f"{name} indices must lie in [0, {len(names)})")
    return value


@functools.lru_cache(maxsize=None)
def _tables(device: torch.device) -> dict[str, torch.Tensor]:
    """Colours, backgrounds and sizes as tensors on ``device``, made once per device: a copy from the host
    to an accelerator waits for everything queued on it, so rendering must not make one per batch."""
    return {name: torch.tensor(list(values.values()), device=device)
            for name, values in (("colour", COLOURS), ("background", BACKGROUNDS), ("size", SIZES))}


def _coverage(scenes: Scenes, R: int, masked: bool | None = None) -> torch.Tensor:
    """Anti-aliased coverage of every object slot, (B, N, R, R): clamp(0.5 - signed distance in px).

    ``masked`` (default: on the CPU) computes each object's distance for its own shape only; otherwise
    all four are computed and one picked, which never waits for an accelerator."""
    row, col = scenes.position // 3, scenes.position % 3
    cx = (col + 0.5) / 3 + scenes.jitter[..., 0]  # (B, N) centre in image fractions
    cy = (row + 0.5) / 3 + scenes.jitter[..., 1]
    device = scenes.shape.device
    r = _tables(device)["size"][scenes.size]  # (B, N) half-extent
    grid = (torch.arange(R, dtype=torch.float32, device=device) + 0.5) / R  # pixel centres
    x = grid[None, None, None, :] - cx[:, :, None, None]  # (B, N, 1, R)
    y = grid[None, None, :, None] - cy[:, :, None, None]  # (B, N, R, 1), image y points down
    sdfs = (_sd_circle, _sd_square, _sd_triangle, _sd_diamond)
    if device.type == "cpu" if masked is None else masked:  # each distance only for the objects of that shape
        d = torch.empty(*scenes.shape.shape, R, R)
        for k, sdf in enumerate(sdfs):
            sel = scenes.shape == k
            if sel.any():
                d[sel] = sdf(x[sel], y[sel], r[sel][:, None, None])
    else:  # selecting by shape would wait for the device (a boolean mask's size): compute all four, pick one
        r = r[:, :, None, None]
        d = torch.stack([sdf(x, y, r) for sdf in sdfs], dim=2)  # (B, N, 4, R, R)
        d = d.gather(2, scenes.shape[:, :, None, None, None].expand(-1, -1, 1, R, R))[:, :, 0]
    return (0.5 - d * R).clamp(0, 1)


def _sd_circle(x, y, r):
    return torch.sqrt(x * x + y * y) - r


def _sd_box(x, y, h):
    """Signed distance to an axis-aligned square of half-side h."""
    qx, qy = x.abs() - h, y.abs() - h
    outside = torch.sqrt(qx.clamp(min=0) ** 2 + qy.clamp(min=0) ** 2)
    return outside + torch.maximum(qx, qy).clamp(max=0)


def _sd_square(x, y, r):
    return _sd_box(x, y, 0.9 * r)  # 0.9: a square looks as large as the circle of radius r


def _sd_diamond(x, y, r):
    """A square turned by 45 degrees with vertices at distance r: a box in rotated coordinates."""
    s = 1 / math.sqrt(2)
    return _sd_box((x + y) * s, (x - y) * s, r * s)


def _sd_triangle(x, y, r):
    """Equilateral triangle, apex up, side 2r, centred on its bounding box (Quilez's exact SDF)."""
    k = math.sqrt(3.0)
    px = x.abs() - r
    py = -(y - (k / 2 - 1 / k) * r) + r / k  # flip y (apex up), move the centroid to the box centre
    fold = px + k * py > 0
    px, py = torch.where(fold, (px - k * py) / 2, px), torch.where(fold, (-k * px - py) / 2, py)
    px = px - torch.maximum(px.clamp(max=0), -2 * r)
    return -torch.sqrt(px * px + py * py) * torch.sign(py)
