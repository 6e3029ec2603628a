"""Data: the shapes world (captioned images with ground truth for edits, ``attribute_edits``), 2-D toys, Gaussian mixtures,
the shipped photos and a loader for a user's own (``photos``)."""

from . import toy2d
from .edits import CHANGES, AttributeEdits, attribute_edits
from .mixture import GaussianMixture
from .photos import PHOTOS, load_image, photo
from .shapes import (ATTRIBUTES, BACKGROUNDS, CAPTION_PARTS, COLOURS, POSITIONS, SHAPES, SIZES, Scenes, ShapesWorld,
                     omissions, parse_caption, read_attribute_vector)

__all__ = ["ATTRIBUTES", "AttributeEdits", "attribute_edits", "BACKGROUNDS", "CAPTION_PARTS", "CHANGES", "COLOURS",
           "GaussianMixture", "load_image", "omissions", "photo", "PHOTOS", "POSITIONS", "SHAPES", "SIZES", "Scenes",
           "ShapesWorld", "parse_caption", "read_attribute_vector", "toy2d"]
