"""A pipeline bundles what methods need besides the denoiser: schedule, text encoder, image codec.

ARCHITECTURE.md, "The one protocol": samplers and editing methods take a pipeline and never know which
network is inside. The course's models work in pixel space, so the codec is the identity; a latent
model (Stable Diffusion) would plug a VAE in as ``encode``/``decode``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ._checks import check_float, check_int
from .diffusion import ClassifierFreeGuidance, DDIMSampler, NoiseSchedule, prediction_type_of, sample
from .models.text import Tokenizer


@dataclass
class Pipeline:
    """denoiser(x_t, t, ids): a text-conditioned network whose ``cond`` is caption token ids, and whose
    ``prediction_type`` says what it outputs (eps, x_0 or v)."""

    denoiser: nn.Module
    schedule: NoiseSchedule
    tokenizer: Tokenizer
    resolution: int = 32
    channels: int = 3

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    @property
    def prediction_type(self) -> str:
        return prediction_type_of(self.denoiser)

    def sampler(self, steps: int = 50, **options) -> DDIMSampler:
        """The sampler ``generate`` uses: DDIM over ``steps`` steps reading the denoiser's ``prediction_type``,
        with x0 clipped to [-1, 1] and eps re-derived from the clipped x0 (``options`` change any of these).
        Clipping alone (diffusers' default) feeds what guidance pushed past the data range back in through eps;
        lesson 03 measures the difference."""
        return DDIMSampler(**{"num_steps": steps, "prediction_type": self.prediction_type, "clip_sample": 1.0,
                              "use_clipped_model_output": True, **options})

    def encode_text(self, captions: Sequence[str]) -> torch.Tensor:
        """Caption token ids (B, L) on the model's device; "" is the unconditional input."""
        return self.tokenizer(captions).to(self.device)

    def text_features(self, captions: Sequence[str]) -> torch.Tensor:
        """The text encoder's features (B, L, width) of the captions: a ``cond`` the denoiser takes in place of
        token ids, and one that can be optimised (null-text inversion, Imagic)."""
        encoder = getattr(self.denoiser, "encoder", None)
        if encoder is None:
            raise ValueError(f"pipe.denoiser must be text-conditioned (have an encoder), got {type(self.denoiser).__name__}")
        return encoder(self.encode_text(captions))[0]

    def guided(self, scale: float) -> ClassifierFreeGuidance:
        """The denoiser with classifier-free guidance towards the caption, against the empty caption."""
        return ClassifierFreeGuidance(self.denoiser, scale, uncond=self.encode_text([""]))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] to the space the model denoises (pixel space: unchanged)."""
        return images

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Back from the model's space to images (pixel space: unchanged)."""
        return x

    @torch.no_grad()
    def generate(self, captions: Sequence[str], guidance: float = 3.0, steps: int | None = None, seed: int = 0,
                 sampler=None, progress: bool = False) -> torch.Tensor:
        """Images (B, C, R, R) for the captions, from noise drawn with ``seed``, by ``sampler`` (default:
        ``self.sampler(steps)``, 50 steps unless ``steps`` says; give one of the two, not both)."""
        return self.generate_from(self.encode_text(captions), guidance, steps, seed, sampler, progress)

    @torch.no_grad()
    def generate_from(self, cond: torch.Tensor, guidance: float = 3.0, steps: int | None = None, seed: int = 0,
                      sampler=None, progress: bool = False, shared_noise: bool = False) -> torch.Tensor:
        """``generate`` for a ``cond`` the denoiser takes: caption token ids (B, L), or text features (B, L, width)
        (an optimised embedding, Imagic's), then guided against the empty caption's features. ``shared_noise``: every
        image starts from the same x_T (the one a batch of one would draw), so only ``cond`` differs."""
        if not isinstance(cond, torch.Tensor) or cond.ndim not in (2, 3):
            raise ValueError(f"cond must be token ids (B, L) or text features (B, L, width), got {cond!r:.80}")
        if not isinstance(shared_noise, bool):
            raise ValueError(f"shared_noise must be a bool, got {shared_noise!r}")
        check_int("seed", seed, 0)
        check_float("guidance", guidance)
        if steps is not None and sampler is not None:
            raise ValueError("give steps or sampler, not both: a sampler carries its own number of steps")
        sampler = sampler or self.sampler(50 if steps is None else check_int("steps", steps, 1))
        guided = self.guided(guidance)
        if isinstance(cond, torch.Tensor) and cond.is_floating_point():
            guided.uncond = self.text_features([""])
        g = torch.Generator().manual_seed(seed)
        x_T = torch.randn(1 if shared_noise else len(cond), self.channels, self.resolution, self.resolution, generator=g)
        x_T = x_T.expand(len(cond), -1, -1, -1).to(self.device)
        x0 = sample(guided, self.schedule, x_T, sampler, cond=cond, generator=g, progress=progress)
        return self.decode(x0)
