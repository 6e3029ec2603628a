"""A pipeline bundles what methods need besides the denoiser: schedule, text encoder, codec, sampler settings, defaults.

ARCHITECTURE.md, "The one protocol": samplers and editing methods take a pipeline and never know which network is
inside, nor whether it denoises pixels or latents. Whatever differs between the course's pixel models and a latent
model such as Stable Diffusion is a property of the pipeline:

- the images it takes and makes (``channels``, ``resolution``) and the shape of the model's input (``model_shape``);
- the codec between the two (``codec``: None in pixel space; a VAE over latents, ``models.sd.VAECodec``);
- how its DDIM sampler and inverter step (``sampling``; for a diffusers model, read from its scheduler config);
- which captions its tokenizer accepts (``check_prompt``);
- the methods' per-model defaults (``defaults``, with the rule for every default the methods take).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_choice, check_float, check_int, check_mask, check_tensor, values_checkable
from .diffusion import (ClassifierFreeGuidance, DDIMInverter, DDIMSampler, DDPMSampler, NoiseSchedule,
                        prediction_type_of, sample, sampler_settings_from_diffusers)
from .models.text import Tokenizer

IMAGIC_TRAINABLE = ("full", "lora")


@dataclass(frozen=True)
class Defaults:
    """The methods' defaults that depend on the model, and the rule for every other default (stated here once).

    - ``guidance_scale`` (None in a method's signature means this one): the classifier-free scale of every method
      that draws new content under a prompt: ``generate``, ``sdedit``, DiffEdit's mask and decoding, the scale
      null-text inversion fits its reconstruction to, Imagic's stage 3. The course's models: 3.0 (where the shipped
      U-Net's joint caption accuracy peaks, README's zoo table); Stable Diffusion: 7.5 (diffusers' default). A method
      that must retrace an image (``invert``, DDIB's ``translate_captions``, DiffEdit's encoding) defaults to 1: DDIM's
      ODE runs backwards exactly only without guidance (lesson 06 measures it).
    - ``num_inference_steps``: 50 everywhere (diffusers' default).
    - strengths: SDEdit 0.5 (the middle of the paper's recommended [0.3, 0.6] of T), DiffEdit's mask 0.5 (the paper's
      and diffusers'), DiffEdit's encoding ratio 0.5 (the paper's; diffusers' pipeline uses 0.8).
    - ``seed``: 0, in every method that draws noise; the deterministic ones (inversion, reconstruction, DDIB,
      null-text inversion) take none.
    - ``null_text_lr``: Adam's learning rate in null-text inversion (decayed over the steps as in the paper). The
      paper's 1e-2 suits Stable Diffusion's CLIP features; on the shapes U-Net's it left the round trip at 9.7-24.5 dB
      where 0.1 reached 32.9-37.2 (4 images, 10 steps, guidance 7.5, measured).
    - ``imagic_*``: Imagic's stages (``editing.imagic``): Adam steps and learning rate of the embedding (stage 1) and
      of the fine-tuning (stage 2), and what stage 2 trains: ``"full"`` (a copy of the network: the course's small
      models) or ``"lora"`` (low-rank adapters on the attention projections, nothing copied: what fits a 16 GB GPU
      for Stable Diffusion's 860M-parameter U-Net). The course's values were measured on shapes-unet (see
      ``editing.imagic.imagic``).
    """

    guidance_scale: float = 3.0
    null_text_lr: float = 0.1
    imagic_embed_steps: int = 100
    imagic_embed_lr: float = 1e-2
    imagic_tune_steps: int = 100
    imagic_tune_lr: float = 2e-6
    imagic_trainable: str = "full"

    def __post_init__(self):
        check_float("guidance_scale", self.guidance_scale)
        for name in ("null_text_lr", "imagic_embed_lr", "imagic_tune_lr"):
            if check_float(name, getattr(self, name), 0.0) == 0:
                raise ValueError(f"{name} must be > 0")
        check_int("imagic_embed_steps", self.imagic_embed_steps, 0)
        check_int("imagic_tune_steps", self.imagic_tune_steps, 0)
        check_choice("imagic_trainable", self.imagic_trainable, IMAGIC_TRAINABLE)


@dataclass(frozen=True)
class Sampling:
    """How the model's DDIM sampler and inverter step: which timesteps (``spacing``, and ``offset``, diffusers'
    ``steps_offset``), abar at the clean end (``set_alpha_to_one``), and, for generation only, clipping x0_hat
    (``clip_sample``, with ``use_clipped_model_output``: see ``diffusion.ddim_step``). Inversion and the sampler that
    retraces it never clip: clipping would break the symmetry of the two chains.

    The default is the course's models' (x0_hat clipped to the data range, eps re-derived from it: lesson 03 measures
    why); ``from_diffusers`` reads a model's scheduler config (Stable Diffusion: leading spacing, offset 1, abar_0 at
    the clean end, no clipping: latents are not in [-1, 1])."""

    spacing: str = "leading"
    offset: int = 0
    set_alpha_to_one: bool = True
    clip_sample: float | None = 1.0
    use_clipped_model_output: bool = True

    def __post_init__(self):
        DDIMSampler(**dataclasses.asdict(self))  # checks every field

    @classmethod
    def from_diffusers(cls, config) -> Sampling:
        """The settings of diffusers' ``DDIMScheduler`` made from ``config`` (any scheduler's config, as a model's
        folder ships it: Stable Diffusion 1.5's is a PNDM config), without its ``prediction_type``, which the
        denoiser states."""
        settings = sampler_settings_from_diffusers(config)
        return cls(spacing=settings["spacing"], offset=settings["offset"],
                   set_alpha_to_one=settings["set_alpha_to_one"], clip_sample=settings["clip_sample"],
                   use_clipped_model_output=False)


@dataclass
class Pipeline:
    """denoiser(x_t, t, cond): a text-conditioned network whose ``cond`` is caption token ids or the text features
    its ``encoder`` makes of them, and whose ``prediction_type`` says what it outputs (eps, x_0 or v).

    ``resolution`` and ``channels`` are the images'; ``codec`` maps them to the model's input and back (None: the
    model works on the pixels). ``sampling`` and ``defaults``: see ``Sampling`` and ``Defaults``."""

    denoiser: nn.Module
    schedule: NoiseSchedule
    tokenizer: Tokenizer
    resolution: int = 32
    channels: int = 3
    codec: nn.Module | None = None
    sampling: Sampling = field(default_factory=Sampling)
    defaults: Defaults = field(default_factory=Defaults)

    def __post_init__(self):
        check_int("resolution", self.resolution, 1)
        check_int("channels", self.channels, 1)
        if not isinstance(self.sampling, Sampling):
            raise ValueError(f"sampling must be a Sampling, got {type(self.sampling).__name__}")
        if not isinstance(self.defaults, Defaults):
            raise ValueError(f"defaults must be a Defaults, got {type(self.defaults).__name__}")
        if self.codec is not None and self.resolution % self.codec.factor:
            raise ValueError(f"resolution must be a multiple of the codec's factor {self.codec.factor}, "
                             f"got {self.resolution}")

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    @property
    def prediction_type(self) -> str:
        return prediction_type_of(self.denoiser)

    @property
    def model_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of what the denoiser takes: the images' for a pixel model, the latents' behind a codec (Stable
        Diffusion 1.5: 4 x 64 x 64 for 3 x 512 x 512 images)."""
        if self.codec is None:
            return (self.channels, self.resolution, self.resolution)
        side = self.resolution // self.codec.factor
        return (self.codec.latent_channels, side, side)

    # --- samplers ---------------------------------------------------------------------------------------------

    def sampler(self, num_inference_steps: int = 50, **options) -> DDIMSampler:
        """The DDIM sampler ``generate`` uses: ``num_inference_steps`` steps reading the denoiser's
        ``prediction_type``, with the pipeline's ``sampling`` settings (``options`` change any of them)."""
        settings = {**dataclasses.asdict(self.sampling), **options}
        return DDIMSampler(num_steps=num_inference_steps, prediction_type=self.prediction_type, **settings)

    def ddpm_sampler(self, num_inference_steps: int = 50) -> DDPMSampler:
        """DDPM's ancestral sampler over the same timesteps and clipping (SDEdit's ``sampler="ddpm"``)."""
        s = self.sampling
        return DDPMSampler(num_inference_steps, spacing=s.spacing, offset=s.offset, clip_sample=s.clip_sample,
                           prediction_type=self.prediction_type)

    def inversion_samplers(self, num_inference_steps: int = 50) -> tuple[DDIMInverter, DDIMSampler]:
        """A DDIM inverter and the sampler that retraces it: the pipeline's timesteps and abar at the clean end, no
        clipping (it would break the symmetry of the two chains)."""
        check_int("num_inference_steps", num_inference_steps, 1, self.schedule.T + 1)
        s = self.sampling
        settings = dict(num_steps=num_inference_steps, prediction_type=self.prediction_type, spacing=s.spacing,
                        offset=s.offset, set_alpha_to_one=s.set_alpha_to_one)
        return DDIMInverter(**settings), DDIMSampler(**settings)

    # --- text --------------------------------------------------------------------------------------------------

    def check_prompt(self, prompt, batch: int, name: str = "prompt") -> list[str]:
        """``prompt``: a list of ``batch`` strings (one per image), one string when ``batch`` is 1, or None for the
        empty caption; each must be one the tokenizer takes whole (the course's: known words only; CLIP's: at most
        75 tokens. A caption is refused, never cut or mapped to unknown tokens)."""
        if prompt is None:
            return [""] * batch
        if isinstance(prompt, str) and batch == 1:
            prompt = [prompt]
        if isinstance(prompt, str) or not isinstance(prompt, Sequence) or len(prompt) != batch \
                or not all(isinstance(p, str) for p in prompt):
            raise ValueError(f"{name} must be a list of {batch} strings (one per image) or None, got {prompt!r:.200}")
        for i, caption in enumerate(prompt):
            self.tokenizer.check(caption, f"{name}[{i}]")
        return list(prompt)

    def encode_text(self, prompt: Sequence[str]) -> torch.Tensor:
        """Caption token ids (B, L) on the model's device; "" is the unconditional input."""
        return self.tokenizer(prompt).to(self.device)

    @property
    def encoder(self) -> nn.Module:
        encoder = getattr(self.denoiser, "encoder", None)
        if encoder is None:
            raise ValueError(f"pipe.denoiser must be text-conditioned (have an encoder), got {type(self.denoiser).__name__}")
        return encoder

    def text_features(self, prompt: Sequence[str]) -> torch.Tensor:
        """The text encoder's features (B, L, width), in float32 whatever the encoder's dtype: the ``cond`` every
        method passes the denoiser (computed once per call, not once per step), and one that can be optimised
        (null-text inversion, Imagic). ``prompt``: a list of captions, each checked as ``check_prompt`` checks it."""
        if isinstance(prompt, str) or not isinstance(prompt, Sequence):
            raise ValueError(f"prompt must be a list of strings, got {type(prompt).__name__}")
        prompt = self.check_prompt(prompt, len(prompt))
        return self.encoder(self.encode_text(prompt))[0].float()

    def check_prompt_embeds(self, prompt_embeds, name: str = "prompt_embeds") -> torch.Tensor:
        """Text features (B, L, width) of the pipeline's encoder, as ``text_features`` gives them."""
        return check_tensor(name, prompt_embeds, shape=(None, self.encoder.max_length, self.encoder.width))

    def guided(self, guidance_scale: float, batch: int = 1) -> ClassifierFreeGuidance:
        """The denoiser with classifier-free guidance towards the prompt's features, against the empty caption's,
        encoded for a batch of ``batch`` prompts as diffusers' ``encode_prompt`` encodes them (a text encoder's
        rounding can depend on the batch; a batch of 1 stands for any)."""
        check_int("batch", batch, 1)
        return ClassifierFreeGuidance(self.denoiser, guidance_scale, uncond=self.text_features([""] * batch))

    # --- images ------------------------------------------------------------------------------------------------

    def check_images(self, images, name: str = "image") -> torch.Tensor:
        """``images``: (B, channels, resolution, resolution) with values in [-1, 1] (checked where reading them is
        cheap: on the CPU). Nothing is resized or clipped."""
        R = self.resolution
        check_tensor(name, images, shape=(None, self.channels, R, R))
        if values_checkable(images) and images.numel() and (images.min() < -1 or images.max() > 1):
            raise ValueError(f"{name} must lie in [-1, 1], got values in [{images.min():.3f}, {images.max():.3f}]")
        return images

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] to the model's space, in float32 (pixel space: unchanged; a VAE: the scaled latents)."""
        return images if self.codec is None else self.codec.encode(images)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Back from the model's space to images, in float32 (a VAE's may leave [-1, 1] slightly: clamp to show)."""
        return x if self.codec is None else self.codec.decode(x)

    def mask_to_model(self, mask, batch: int, name: str = "mask_image") -> torch.Tensor:
        """A mask (``batch`` or 1, 1, H, W) in [0, 1] at the images' resolution, or already at the model's, as the
        model's input needs it: behind a codec each latent cell takes the share of its pixels the mask covers (area
        averaging), so a cell half inside is half regenerated."""
        R, (_, side, _) = self.resolution, self.model_shape
        check_tensor(name, mask, ndim=4)
        if tuple(mask.shape[-2:]) == (side, side):
            return check_mask(name, mask, batch, (side, side))
        check_mask(name, mask, batch, (R, R))
        return F.adaptive_avg_pool2d(mask, side) if side != R else mask

    def mask_to_image(self, mask, name: str = "mask") -> torch.Tensor:
        """A mask (B, 1, h, w) on the model's grid at the images' resolution: each latent cell's value on the
        ``codec.factor`` x ``codec.factor`` pixels it covers (the way back of ``mask_to_model``, for showing a latent
        mask over an image or pasting by it). Pixel space: the mask as it is."""
        R, (_, side, _) = self.resolution, self.model_shape
        check_tensor(name, mask, shape=(None, 1, side, side))
        return F.interpolate(mask, size=(R, R), mode="nearest") if side != R else mask

    # --- generation --------------------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, prompt: Sequence[str], *, guidance_scale: float | None = None,
                 num_inference_steps: int | None = None, seed: int = 0, sampler=None,
                 progress: bool = False) -> torch.Tensor:
        """Images (B, C, R, R) for the captions, from noise drawn with ``seed``, by ``sampler`` (default:
        ``self.sampler(num_inference_steps)``, 50 steps unless given; give one of the two, not both), guided with
        ``guidance_scale`` (None: ``defaults.guidance_scale``) against the empty caption."""
        if not isinstance(prompt, Sequence):
            raise ValueError(f"prompt must be a list of strings, got {type(prompt).__name__}")
        prompt = self.check_prompt(prompt, 1 if isinstance(prompt, str) else len(prompt))
        return self.generate_from(self.text_features(prompt), guidance_scale=guidance_scale,
                                  num_inference_steps=num_inference_steps, seed=seed, sampler=sampler,
                                  progress=progress)

    @torch.no_grad()
    def generate_from(self, prompt_embeds: torch.Tensor, *, guidance_scale: float | None = None,
                      num_inference_steps: int | None = None, seed: int = 0, sampler=None, progress: bool = False,
                      shared_noise: bool = False) -> torch.Tensor:
        """``generate`` for text features (B, L, width) (``text_features``, or an optimised embedding: Imagic's),
        guided against the empty caption's. ``shared_noise``: every image starts from the same x_T (the one a
        batch of one would draw), so only the features differ. x_T is drawn on the CPU from ``seed``, as diffusers
        draws with a CPU generator."""
        self.check_prompt_embeds(prompt_embeds)
        if not isinstance(shared_noise, bool):
            raise ValueError(f"shared_noise must be a bool, got {shared_noise!r}")
        check_int("seed", seed, 0)
        guidance_scale = self.defaults.guidance_scale if guidance_scale is None else guidance_scale
        check_float("guidance_scale", guidance_scale)
        if num_inference_steps is not None and sampler is not None:
            raise ValueError("give num_inference_steps or sampler, not both: a sampler carries its own number of steps")
        sampler = sampler or self.sampler(
            50 if num_inference_steps is None else check_int("num_inference_steps", num_inference_steps, 1))
        g = torch.Generator().manual_seed(seed)
        B = len(prompt_embeds)
        x_T = torch.randn(1 if shared_noise else B, *self.model_shape, generator=g)
        x_T = x_T.expand(B, -1, -1, -1).to(self.device)
        x0 = sample(self.guided(guidance_scale, B), self.schedule, x_T, sampler, cond=prompt_embeds.to(self.device),
                    generator=g, progress=progress)
        return self.decode(x0)


def check_pipeline(pipe) -> Pipeline:
    """``pipe`` must be a coursekit ``Pipeline``."""
    if not isinstance(pipe, Pipeline):
        raise ValueError(f"pipe must be a coursekit Pipeline (e.g. zoo.load('shapes-unet')), got {type(pipe).__name__}")
    return pipe
