"""Editing methods, written on ``Pipeline``: SDEdit, DDIM inversion, null-text inversion and DDIB so far
(sparse inference, DiffEdit and Imagic to come; see ARCHITECTURE.md)."""

from .ddib import translate, translate_captions
from .inversion import Inversion, invert, psnr, reconstruct
from .null_text import null_text_invert
from .sdedit import sdedit

__all__ = ["Inversion", "invert", "null_text_invert", "psnr", "reconstruct", "sdedit", "translate", "translate_captions"]
