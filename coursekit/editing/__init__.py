"""Editing methods, written on ``Pipeline``: DDIM inversion, null-text inversion and DDIB so far (SDEdit,
sparse inference, DiffEdit and Imagic to come; see ARCHITECTURE.md)."""

from .ddib import translate, translate_captions
from .inversion import Inversion, invert, psnr, reconstruct
from .null_text import null_text_invert

__all__ = ["Inversion", "invert", "null_text_invert", "psnr", "reconstruct", "translate", "translate_captions"]
