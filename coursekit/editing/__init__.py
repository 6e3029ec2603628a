"""Editing methods, written on ``Pipeline``: SDEdit, spatially sparse inference for edits (SIGE), DDIM inversion,
null-text inversion, DDIB, DiffEdit and Imagic (see ARCHITECTURE.md).

One calling convention, in diffusers' words (what these users meet next):

    method(pipe, image, prompt, *, strength=..., num_inference_steps=50, guidance_scale=..., seed=0, progress=False)

- ``image``: the images to edit (B, C, R, R) in [-1, 1], at the pipeline's resolution (never resized or clipped);
  ``prompt``: one caption per image (a single string for one image; None: the empty caption). A method with two
  prompts (DDIB, DiffEdit) takes both by name: ``source_prompt`` (what the image shows) and ``target_prompt`` (what
  it should show). Everything after ``image`` and ``prompt`` is keyword-only.
- Masks are ``mask_image`` (B or 1, 1, H, W) in [0, 1], 1 where the method may change the image, at the images'
  resolution or the model's (``Pipeline.mask_to_model``).
- A method returns images (B, C, R, R), or a small result object where it returns more: ``Inversion``,
  ``DiffEditResult``, ``Imagic``.
- Every default and its rule: ``pipeline.Defaults`` (a guidance scale of None is the pipeline's).
"""

from .ddib import translate, translate_captions
from .diffedit import DiffEditResult, diffedit, diffedit_mask, difference_map, mask_from_map
from .imagic import Imagic, imagic
from .inversion import Inversion, invert, reconstruct
from .null_text import null_text_invert
from .sdedit import keep_outside, sdedit
from .sparse import sparse_sdedit

__all__ = ["DiffEditResult", "Imagic", "Inversion", "diffedit", "diffedit_mask", "difference_map",
           "imagic", "invert", "keep_outside", "mask_from_map", "null_text_invert", "reconstruct", "sdedit",
           "sparse_sdedit", "translate", "translate_captions"]
