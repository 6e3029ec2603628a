"""Stable Diffusion as a coursekit ``Pipeline``: every sampler and editing method runs on it unchanged.

    import torch
    from coursekit.stable_diffusion import stable_diffusion
    from coursekit.editing import sdedit

    pipe = stable_diffusion("stable-diffusion-v1-5/stable-diffusion-v1-5", torch_dtype=torch.float16, device="cuda")
    edited = sdedit(pipe, image, "a watercolour painting of a cat", strength=0.6)   # image: (1, 3, 512, 512) in [-1, 1]

A pipeline comes from a model name (weights download then, and only then: ``pip install "coursekit[sd]"``), a
local folder in diffusers' layout, an existing diffusers pipeline object (``StableDiffusionPipeline`` or any with
``unet``, ``vae``, ``text_encoder``, ``tokenizer`` and ``scheduler``), or the parts themselves (``from_parts``). SD 1.5
and 2.1 (epsilon and v-prediction) are what it was tested against, on tiny random parts of both layouts.

``network="coursekit"`` (the default) runs the course's own U-Net (``models.unet``) with the checkpoint's weights:
the network lesson 01 builds, at full scale, giving diffusers' numbers (``tests/test_stable_diffusion.py`` checks
every method against diffusers' pipelines with both networks). ``network="diffusers"`` runs diffusers'
``UNet2DConditionModel`` itself.

What the pipeline takes from the checkpoint: the latent shape and the VAE's ``scaling_factor`` (``models.sd``), the
DDIM settings from the scheduler config (``pipeline.Sampling.from_diffusers``: SD's leading spacing, steps offset 1,
abar_0 at the clean end, no clipping of latents), the prediction type, and fp16 weights with fp32 sampling
arithmetic. Stable Diffusion's per-model defaults are ``SD_DEFAULTS``.

Licence and safety: the weights are under the CreativeML OpenRAIL-M licence, whose use restrictions bind whoever
uses them. diffusers' ``StableDiffusionPipeline`` runs a safety checker (a CLIP image classifier) on its outputs;
these pipelines decode the latents themselves and do not run it, and loading by name does not download it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ._checks import check_choice
from .diffusion import sampler_settings_from_diffusers, schedule_from_diffusers
from .models.sd import ClipTextEncoder, ClipTokenizer, LatentUNet, VAECodec
from .models.text import TextConditioned
from .models.unet import from_diffusers as unet_from_diffusers
from .pipeline import Defaults, Pipeline, Sampling

NETWORKS = ("coursekit", "diffusers")
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
USES = ("auto", "real", "tiny")

# Stable Diffusion's defaults for the methods (the rule: ``pipeline.Defaults``). Guidance 7.5 and the null-text
# learning rate 1e-2 are diffusers' and the null-text paper's; Imagic's stage 1 is the diffusers community pipeline's
# (500 Adam steps at 1e-3); stage 2 trains rank-4 LoRA adapters for 1000 steps at 1e-4, LoRA's customary rate (the
# community pipeline's 2e-6 is for full fine-tuning, which does not fit a 16 GB GPU). None of these was measured on SD
# here: no GPU was available to the course's builders when they were set.
SD_DEFAULTS = Defaults(guidance_scale=7.5, null_text_lr=1e-2, imagic_embed_steps=500, imagic_embed_lr=1e-3,
                       imagic_tune_steps=1000, imagic_tune_lr=1e-4, imagic_trainable="lora")


def from_parts(unet, vae, text_encoder, tokenizer, scheduler_config, *, network: str = "coursekit",
               copy: bool = True) -> Pipeline:
    """A pipeline over Stable Diffusion's parts: a diffusers ``UNet2DConditionModel`` and ``AutoencoderKL``, a
    transformers ``CLIPTextModel`` and ``CLIPTokenizer``, and a scheduler's config (``scheduler.config``, any
    scheduler's: its DDIM reading is taken). ``network``: "coursekit" runs the course's U-Net with ``unet``'s weights
    (copied, or shared when ``copy`` is False), "diffusers" runs ``unet`` itself. The parts stay on their device and
    in their dtype."""
    check_choice("network", network, NETWORKS)
    for name, part, kind in (("unet", unet, "UNet2DConditionModel"), ("vae", vae, "AutoencoderKL"),
                             ("text_encoder", text_encoder, "CLIPTextModel")):
        if type(part).__name__ != kind:
            raise ValueError(f"{name} must be a {kind}, got {type(part).__name__}")
    if not hasattr(tokenizer, "model_max_length"):
        raise ValueError(f"tokenizer must be a transformers CLIPTokenizer, got {type(tokenizer).__name__}")
    settings = sampler_settings_from_diffusers(scheduler_config)
    tokens = ClipTokenizer(tokenizer)
    encoder = ClipTextEncoder(text_encoder, tokens.max_length)
    if encoder.width != unet.config.cross_attention_dim:
        raise ValueError(f"text_encoder's width {encoder.width} must be the unet's cross_attention_dim "
                         f"{unet.config.cross_attention_dim}")
    codec = VAECodec(vae)
    if codec.latent_channels != unet.config.in_channels:
        raise ValueError(f"vae's latent_channels {codec.latent_channels} must be the unet's in_channels "
                         f"{unet.config.in_channels}")
    net = unet_from_diffusers(unet, copy=copy) if network == "coursekit" else unet
    denoiser = TextConditioned(LatentUNet(net), encoder, "tokens", settings["prediction_type"])
    return Pipeline(denoiser, schedule_from_diffusers(scheduler_config), tokens,
                    resolution=unet.config.sample_size * codec.factor, channels=3, codec=codec,
                    sampling=Sampling.from_diffusers(scheduler_config), defaults=SD_DEFAULTS)


def stable_diffusion(source, *, network: str = "coursekit", torch_dtype: torch.dtype = torch.float32,
                     device: str | torch.device = "cpu", **load_options) -> Pipeline:
    """A pipeline over Stable Diffusion from ``source``: a model name (e.g.
    "stable-diffusion-v1-5/stable-diffusion-v1-5", "stabilityai/stable-diffusion-2-1"), a local folder in diffusers'
    layout (``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``), or a diffusers pipeline object
    (its parts are used as they are: ``torch_dtype``, ``device`` and ``load_options`` are then not taken). A name or
    folder loads the weights in ``torch_dtype`` onto ``device``; ``load_options`` go to each part's
    ``from_pretrained`` (e.g. ``revision``, ``variant="fp16"``, ``local_files_only=True``). ``network``: see the
    module's docstring."""
    check_choice("network", network, NETWORKS)
    if all(hasattr(source, part) for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler")):
        if load_options or torch_dtype is not torch.float32 or str(device) != "cpu":
            raise ValueError("torch_dtype, device and load options apply to a name or folder; a pipeline object's "
                             "parts are used as they are (move or cast the pipeline first)")
        return from_parts(source.unet, source.vae, source.text_encoder, source.tokenizer, source.scheduler.config,
                          network=network)
    if not isinstance(source, (str, Path)):
        raise ValueError(f"source must be a model name, a folder or a diffusers pipeline, got {type(source).__name__}")
    if not isinstance(torch_dtype, torch.dtype) or not torch_dtype.is_floating_point:
        raise ValueError(f"torch_dtype must be a floating torch.dtype, got {torch_dtype!r}")
    try:
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer
    except ImportError as error:
        raise ImportError('Stable Diffusion needs the sd extra: pip install "coursekit[sd]"') from error
    source = str(source)
    where = {k: v for k, v in load_options.items() if k in ("revision", "cache_dir", "local_files_only", "token")}
    unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", torch_dtype=torch_dtype, **load_options)
    vae = AutoencoderKL.from_pretrained(source, subfolder="vae", torch_dtype=torch_dtype, **load_options)
    # transformers names the dtype argument differently across versions: load, then cast
    text_encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder", **load_options).to(torch_dtype)
    tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", **where)
    scheduler_config = DDIMScheduler.load_config(source, subfolder="scheduler", **where)
    # the U-Net was loaded here and is dropped after: the course's shares its tensors rather than copying 860M
    pipe = from_parts(unet, vae, text_encoder, tokenizer, scheduler_config, network=network, copy=False)
    pipe.denoiser.to(device)
    pipe.codec.to(device)
    return pipe


@dataclass
class Situation:
    """What ``find_pipeline`` found: ``name`` "gpu" (real weights on a CUDA GPU in float16), "cpu" (real weights on
    the CPU in float32, only when asked for) or "offline" (tiny random parts on the CPU in float32: the images are
    noise, the code path is the real one); ``reason``, a sentence saying why; ``parts``, the tiny parts behind an
    offline pipeline (``tiny_sd.tiny_parts``: what diffusers' pipelines are built on to check the course's against),
    None otherwise."""

    name: str
    pipe: Pipeline
    reason: str
    parts: dict | None = None

    @property
    def device(self) -> torch.device:
        return self.pipe.device


def find_pipeline(model: str | Path = SD15, *, download: bool = False, use: str = "auto",
                  tiny_resolution: int = 64, **load_options) -> Situation:
    """The Stable Diffusion this machine can run, for a lesson that must run everywhere (lesson 10).

    ``use="auto"``: with a CUDA GPU and ``model``'s weights at hand (a local folder in diffusers' layout, a model
    already in the Hugging Face cache, or a name with ``download=True``, which then downloads it: SD 1.5's U-Net,
    VAE and text encoder are about 4 GB of float32 files, ``variant="fp16"`` halves that), the real model in float16 on
    the GPU; otherwise the tiny random parts of SD 1.5's layout at ``tiny_resolution`` pixels, on the CPU in float32,
    which need no network and no weights. Nothing is downloaded unless ``download`` is True. ``use="real"``: the
    real weights whatever the device (on a CPU, float32: minutes per image), a ValueError naming ``model`` if they
    cannot be loaded; ``use="tiny"``: the tiny parts. ``load_options`` go to ``stable_diffusion`` (e.g.
    ``revision``, ``variant="fp16"``)."""
    check_choice("use", use, USES)
    if not isinstance(download, bool):
        raise ValueError(f"download must be True or False, got {download!r}")
    if not isinstance(model, (str, Path)):
        raise ValueError(f"model must be a model name or a folder, got {type(model).__name__}")
    cuda = torch.cuda.is_available()
    if use == "tiny":
        return _offline(tiny_resolution, "asked for (use='tiny')")
    if use == "auto" and not cuda:
        return _offline(tiny_resolution, "no CUDA GPU: Stable Diffusion 1.5's U-Net takes about 6 s per call at "
                        "512 x 512 on a 2-core CPU (coursekit bench sparse-sd), minutes per edit (use='real' runs it "
                        "anyway)")
    options = dict(load_options)
    if not download and not Path(model).is_dir():
        options["local_files_only"] = True  # the cache only: no network
    try:
        pipe = stable_diffusion(model, torch_dtype=torch.float16 if cuda else torch.float32,
                                device="cuda" if cuda else "cpu", **options)
    except (OSError, ValueError, ImportError) as error:  # not in the cache, no such folder, no network, no extra
        if use == "real":
            raise ValueError(f"model {str(model)!r} could not be loaded ({type(error).__name__}: {error}); give a folder "
                             "in diffusers' layout, or download=True") from error
        return _offline(tiny_resolution, f"{model} could not be loaded from this machine ({type(error).__name__}: "
                        f"{str(error)[:200]}); download=True fetches a model by name")
    return Situation("gpu" if cuda else "cpu", pipe, f"{model} loaded on "
                     + (f"{torch.cuda.get_device_name(0)} in float16" if cuda else "the CPU in float32 (use='real')"))


def _offline(resolution: int, why: str) -> Situation:
    from .tiny_sd import tiny_parts

    try:
        parts = tiny_parts(layout="sd15", resolution=resolution)
    except ImportError as error:
        raise ImportError('Stable Diffusion, even its tiny offline parts, needs the sd extra: '
                          'pip install "coursekit[sd]"') from error
    return Situation("offline", from_parts(**parts), f"tiny random SD 1.5 parts: {why}", parts)
