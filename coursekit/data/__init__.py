"""Data: the shapes world (captioned images with ground truth for edits), 2-D toys, Gaussian mixtures."""

from . import toy2d
from .mixture import GaussianMixture
from .shapes import ATTRIBUTES, BACKGROUNDS, COLOURS, POSITIONS, SHAPES, SIZES, Scenes, ShapesWorld, parse_caption

__all__ = ["ATTRIBUTES", "BACKGROUNDS", "COLOURS", "GaussianMixture", "POSITIONS", "SHAPES", "SIZES", "Scenes",
           "ShapesWorld", "parse_caption", "toy2d"]
