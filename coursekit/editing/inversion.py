"""DDIM inversion on a pipeline: an image back to the noise that generates it, and the way back.

Song, Meng & Ermon, "Denoising Diffusion Implicit Models", ICLR 2021, sec. 5.4: with eta = 0 DDIM is an
Euler discretisation of an ODE, so the chain run upwards (``diffusion.DDIMInverter``) encodes an image into
x_T, and DDIM sampling from x_T with the same settings decodes it. Each upward step evaluates the network
at the current, less noisy x with the next timestep, so the round trip is exact only as the number of
steps S grows (the mean squared error falls roughly as 1/S^2; Table 2). Inversion may be conditioned on a caption and
guided; with classifier-free guidance the round trip degrades (``null_text.py`` repairs that).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .._checks import check_float, check_int, check_tensor, values_checkable
from ..diffusion import ClassifierFreeGuidance, DDIMInverter, DDIMSampler, invert as invert_chain, sample
from ..pipeline import Pipeline


@dataclass
class Inversion:
    """A DDIM inversion: ``latents[i]`` is x at level ``timesteps[i]``, from the clean images (level -1)
    up to the noise x_T (``noise``), with what ``reconstruct`` needs to run the chain back: the captions,
    the guidance scale, the number of steps and, from null-text inversion, the unconditional features
    to guide with at each timestep (``nulls``; None: the empty caption's)."""

    latents: list[torch.Tensor]
    timesteps: list[int]
    captions: list[str]
    guidance: float
    steps: int
    nulls: dict[int, torch.Tensor] | None = None

    @property
    def noise(self) -> torch.Tensor:
        return self.latents[-1]


def check_pipeline(pipe) -> Pipeline:
    if not isinstance(pipe, Pipeline):
        raise ValueError(f"pipe must be a coursekit Pipeline (e.g. zoo.load('shapes-unet')), got {type(pipe).__name__}")
    return pipe


def check_images(pipe: Pipeline, images, name: str = "images") -> torch.Tensor:
    """``images``: (B, C, R, R) at the pipeline's channels and resolution, values in [-1, 1] (checked where
    reading them is cheap: on the CPU)."""
    check_tensor(name, images, shape=(None, pipe.channels, pipe.resolution, pipe.resolution))
    if values_checkable(images) and images.numel() and (images.min() < -1 or images.max() > 1):
        raise ValueError(f"{name} must lie in [-1, 1], got values in [{images.min():.3f}, {images.max():.3f}]")
    return images


def check_captions(captions: Sequence[str] | None, batch: int, name: str = "captions", tokenizer=None) -> list[str]:
    """``captions``: one string per image, or None for the empty caption; with a ``tokenizer``, every word must
    be one it knows (a caption in words the model never saw names no domain it can invert or decode to)."""
    if captions is None:
        return [""] * batch
    if isinstance(captions, str) or not all(isinstance(c, str) for c in captions) or len(captions) != batch:
        raise ValueError(f"{name} must be a list of {batch} strings (one per image) or None, got {captions!r}")
    for i, caption in enumerate(captions if tokenizer is not None else ()):
        unknown = [w for w in tokenizer.split(caption) if w not in tokenizer.index]
        if unknown:
            raise ValueError(f"{name}[{i}] has words the model does not know: {unknown} (in {caption!r})")
    return list(captions)


def samplers(pipe: Pipeline, steps: int) -> tuple[DDIMInverter, DDIMSampler]:
    """An inverter and the sampler that retraces it: the same timesteps, no clipping (clipping x0 would
    break the symmetry of the two chains)."""
    settings = dict(num_steps=check_int("steps", steps, 1, pipe.schedule.T + 1), prediction_type=pipe.prediction_type)
    return DDIMInverter(**settings), DDIMSampler(**settings)


@torch.no_grad()
def invert(pipe: Pipeline, images: torch.Tensor, captions: Sequence[str] | None = None, guidance: float = 1.0,
           steps: int = 50, progress: bool = False) -> Inversion:
    """Encode ``images`` (B, C, R, R) in [-1, 1] into the noise a DDIM sampler maps back to them.

    ``captions`` condition every network call (None: the empty caption); ``guidance`` is the classifier-free
    scale (1: the conditional model alone). Returns the whole trajectory (``Inversion``).
    """
    pipe = check_pipeline(pipe)
    check_images(pipe, images)
    captions = check_captions(captions, images.shape[0], tokenizer=pipe.tokenizer)
    guidance = check_float("guidance", guidance)
    inverter, _ = samplers(pipe, steps)
    x0 = pipe.encode(images.to(pipe.device))
    latents, levels = [x0], [-1]

    def record(i, t, x, x0_hat):
        latents.append(x)
        levels.append(t)

    invert_chain(pipe.guided(guidance), pipe.schedule, x0, inverter, cond=pipe.encode_text(captions),
                 callback=record, progress=progress)
    return Inversion(latents, levels, captions, guidance, steps)


@torch.no_grad()
def reconstruct(pipe: Pipeline, inversion: Inversion, progress: bool = False) -> torch.Tensor:
    """Decode an inversion's noise with the DDIM sampler that retraces it (same steps, captions, guidance)."""
    pipe = check_pipeline(pipe)
    if not isinstance(inversion, Inversion):
        raise ValueError(f"inversion must be what editing.invert returns, got {type(inversion).__name__}")
    _, sampler = samplers(pipe, inversion.steps)
    if inversion.nulls is None:
        denoiser, cond = pipe.guided(inversion.guidance), pipe.encode_text(inversion.captions)
    else:
        denoiser, cond = NullPerStep(pipe, inversion.guidance, inversion.nulls), pipe.text_features(inversion.captions)
    x0 = sample(denoiser, pipe.schedule, inversion.noise, sampler, cond=cond, progress=progress)
    return pipe.decode(x0)


class NullPerStep(ClassifierFreeGuidance):
    """Classifier-free guidance whose unconditional input is ``nulls[t]`` at timestep t (text features,
    as null-text inversion optimised them); ``cond`` must then be text features too."""

    def __init__(self, pipe: Pipeline, scale: float, nulls: dict[int, torch.Tensor]):
        super().__init__(pipe.denoiser, scale)
        self.nulls = nulls

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond) -> torch.Tensor:
        level = int(t[0])
        if level not in self.nulls:
            raise ValueError(f"the null-text inversion has no features for timestep {level}: reconstruct with its steps")
        self.uncond = self.nulls[level]
        return super().__call__(x_t, t, cond)


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, 10 log10(peak^2 / MSE), in dB; ``peak`` = 2 for images in
    [-1, 1]. Identical images give inf."""
    check_tensor("a", a, ndim=range(2, 6))
    check_tensor("b", b, shape=tuple(a.shape))
    mse = (a - b).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(check_float("peak", peak, 0.0) ** 2 / mse)
