"""Data: the shapes world (captioned images with ground truth for edits, ``attribute_edits``), 2-D toys, Gaussian mixtures."""

from . import toy2d
from .edits import CHANGES, AttributeEdits, attribute_edits
from .mixture import GaussianMixture
from .shapes import (ATTRIBUTES, BACKGROUNDS, CAPTION_PARTS, COLOURS, POSITIONS, SHAPES, SIZES, Scenes, ShapesWorld,
                     omissions, parse_caption, read_attribute_vector)

__all__ = ["ATTRIBUTES", "AttributeEdits", "attribute_edits", "BACKGROUNDS", "CAPTION_PARTS", "CHANGES", "COLOURS",
           "GaussianMixture", "omissions", "POSITIONS", "SHAPES", "SIZES", "Scenes", "ShapesWorld", "parse_caption",
           "read_attribute_vector", "toy2d"]
