"""Editing methods, written on ``Pipeline``: DDIM inversion so far (SDEdit, sparse inference, DDIB, DiffEdit and
Imagic to come; see ARCHITECTURE.md)."""

from .inversion import Inversion, invert, psnr, reconstruct

__all__ = ["Inversion", "invert", "psnr", "reconstruct"]
