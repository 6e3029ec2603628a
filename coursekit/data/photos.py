"""Real photos for the editing methods on Stable Diffusion (lesson 10): three that ship with the course, and a
user's own file, each as an image tensor a pipeline takes: (1, 3, size, size) in [-1, 1].

The shipped photos (``PHOTOS``; credits and licences in ``coursekit/photos/LICENCE.md``) are scikit-image's CC0 and
public-domain samples: a cat, a person, a still life, which give DiffEdit ("a cat" -> "a dog") and Imagic something
to do. A photo is cropped to its central square and resized to ``size`` with Lanczos filtering (PIL's
``ImageOps.fit``): the one change to a user's file, which the call asks for by naming ``size``; the file itself is
only read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._checks import check_choice, check_int

FOLDER = Path(__file__).resolve().parents[1] / "photos"


@dataclass(frozen=True)
class Photo:
    file: str
    subject: str
    credit: str
    licence: str


PHOTOS = {
    "cat": Photo("cat.jpg", "a cat", "Stefan van der Walt (scikit-image's chelsea)", "CC0"),
    "astronaut": Photo("astronaut.jpg", "a woman, the astronaut Eileen Collins", "NASA (scikit-image's astronaut)",
                       "public domain"),
    "coffee": Photo("coffee.jpg", "a cup of coffee on a table", "Rachel Michetti (scikit-image's coffee)", "CC0"),
}


def photo(name: str, size: int = 512) -> torch.Tensor:
    """The shipped photo ``name`` (one of ``PHOTOS``) as a (1, 3, size, size) image in [-1, 1]: its central square
    resized to ``size`` (512 for Stable Diffusion 1.5, 768 for 2.1)."""
    check_choice("name", name, tuple(PHOTOS))
    return load_image(FOLDER / PHOTOS[name].file, size)


def load_image(path: str | Path, size: int = 512) -> torch.Tensor:
    """A user's image file (any format and mode PIL reads: JPEG, PNG, WebP...; grey, palette, CMYK or with alpha)
    as a (1, 3, size, size) float32 image in [-1, 1]: converted to RGB (transparent pixels composited on white),
    cropped to its central square and resized to ``size`` x ``size`` with Lanczos filtering. A file that is missing
    or that PIL cannot read raises a ValueError naming ``path``."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not isinstance(path, (str, Path)):
        raise ValueError(f"path must be a file path (str or Path), got {type(path).__name__}")
    check_int("size", size, 8)
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path {str(path)!r} is not a file")
    try:
        with Image.open(path) as image:
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"path {str(path)!r} is not an image PIL can read ({error})") from error
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    image = ImageOps.fit(image.convert("RGB"), (size, size), method=Image.Resampling.LANCZOS)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32).copy())  # (size, size, 3) in [0, 255]
    return (pixels / 127.5 - 1).permute(2, 0, 1)[None].contiguous()
