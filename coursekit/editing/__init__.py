"""Editing methods, written on ``Pipeline``: SDEdit, spatially sparse inference for edits (SIGE), DDIM inversion,
null-text inversion, DDIB, DiffEdit and Imagic (see ARCHITECTURE.md)."""

from .ddib import translate, translate_captions
from .diffedit import diffedit, diffedit_mask, difference_map, mask_from_map
from .imagic import Imagic, imagic
from .inversion import Inversion, invert, psnr, reconstruct
from .null_text import null_text_invert
from .sdedit import sdedit
from .sparse import SparseUNet, sparse_sdedit

__all__ = ["Inversion", "diffedit", "diffedit_mask", "difference_map", "Imagic", "imagic", "mask_from_map", "invert", "null_text_invert", "psnr", "reconstruct", "sdedit", "sparse_sdedit", "SparseUNet", "translate", "translate_captions"]
