"""Editing methods, written on ``Pipeline``: DDIM inversion and DDIB so far (SDEdit, sparse inference, DiffEdit
and Imagic to come; see ARCHITECTURE.md)."""

from .ddib import translate, translate_captions
from .inversion import Inversion, invert, psnr, reconstruct

__all__ = ["Inversion", "invert", "psnr", "reconstruct", "translate", "translate_captions"]
