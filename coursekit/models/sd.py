"""Stable Diffusion's parts in the course's protocol: CLIP's tokenizer and text model as a pipeline's tokenizer and
encoder, the text-conditioned U-Net behind float32 sampling, and the VAE as the pipeline's codec.

Rombach, Blattmann, Lorenz, Esser & Ommer, "High-Resolution Image Synthesis with Latent Diffusion Models", CVPR 2022:
the diffusion model runs on the latents z = f E(x) of an autoencoder (sec. 3; f is the VAE config's
``scaling_factor``, 0.18215 for SD 1.x and 2.x, which gives z about unit variance) and reads CLIP's per-token text
features through cross-attention (sec. 3.3). These adapters compute what diffusers' ``StableDiffusionPipeline``
computes (``encode_prompt``, ``vae.encode(...).latent_dist``, ``vae.decode(z / f)``), so that the course's
samplers and editing methods give diffusers' numbers; ``stable_diffusion.py`` assembles them into a ``Pipeline``.
They take the diffusers and transformers objects the caller made and import neither library themselves.
"""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_tensor
from .unet import UNet


class ClipTokenizer:
    """A transformers ``CLIPTokenizer`` as a pipeline's tokenizer: ids (B, 77) padded to the context with the
    tokenizer's own pad token (as ``encode_prompt``), "" included. A caption longer than the context is refused
    (diffusers truncates it and logs a warning: the end of the caption would silently not count)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.max_length = int(tokenizer.model_max_length)

    def __len__(self) -> int:
        return len(self.tokenizer)

    def check(self, caption: str, name: str = "caption") -> None:
        if not isinstance(caption, str):
            raise ValueError(f"{name} must be a str, got {type(caption).__name__}")
        length = len(self.tokenizer(caption, truncation=False).input_ids)  # with its start and end tokens
        if length > self.max_length:
            raise ValueError(f"{name} has {length - 2} tokens, more than the {self.max_length - 2} CLIP's context "
                             f"holds; shorten it (it is refused rather than cut): {caption[:60]!r}...")

    def __call__(self, captions) -> torch.Tensor:
        """Token ids (B, max_length) long."""
        if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
            raise ValueError(f"captions must be a list of str, got {captions!r:.80}")
        for i, caption in enumerate(captions):
            self.check(caption, f"captions[{i}]")
        return self.tokenizer(list(captions), padding="max_length", max_length=self.max_length, truncation=True,
                              return_tensors="pt").input_ids

    def decode(self, ids: torch.Tensor) -> list[str]:
        """The text of each row of ids, without the special tokens."""
        check_tensor("ids", ids, ndim=2, floating=False)
        return self.tokenizer.batch_decode(ids, skip_special_tokens=True)


class ClipTextEncoder(nn.Module):
    """A transformers ``CLIPTextModel`` as the course's text encoder: ids (B, L) -> per-token features (B, L, width),
    the last hidden state that ``encode_prompt`` passes the U-Net (no attention mask: SD's configs set none; SD 2's
    model already has its last layer removed), and the pooled feature (B, width)."""

    def __init__(self, text_model: nn.Module, max_length: int):
        super().__init__()
        if getattr(text_model.config, "use_attention_mask", False):
            raise ValueError("text_model.config.use_attention_mask=True is not supported: coursekit passes no mask")
        self.model = text_model
        self.max_length, self.width = max_length, text_model.config.hidden_size

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_tensor("ids", ids, shape=(None, self.max_length), floating=False)
        out = self.model(ids)
        return out[0], out[1]


class LatentUNet(nn.Module):
    """A text-conditioned U-Net, diffusers' ``UNet2DConditionModel`` or the course's ``UNet`` with its weights, called
    as ``network(x, t, context)``: x and the context are cast to the weights' dtype and the output comes back in x's,
    so that sampling and optimising keep float32 arithmetic while a GPU runs the network in float16."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        dtype = self.dtype
        if isinstance(self.unet, UNet):
            out = self.unet(x.to(dtype), t, context.to(dtype))
        else:
            out = self.unet(x.to(dtype), t, encoder_hidden_states=context.to(dtype)).sample
        return out.to(x.dtype)  # (B, C, h, w)


class VAECodec(nn.Module):
    """A diffusers ``AutoencoderKL`` as a pipeline's codec between images (B, 3, H, W) in [-1, 1] and latents
    (B, latent_channels, H / factor, W / factor): encode z = f * mean of q(z | x), the deterministic choice (a
    ``generator`` draws from q instead, as diffusers' img2img does); decode x = D(z / f). Both return float32."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        config = vae.config
        if config.get("shift_factor") is not None:
            raise ValueError(f"vae.config.shift_factor={config['shift_factor']} is not supported: Stable Diffusion 1 and "
                             "2 latents are only scaled (a shifted VAE is SD 3's or Flux's)")
        self.vae = vae
        self.scaling_factor = float(config["scaling_factor"])
        self.factor = 2 ** (len(config["block_out_channels"]) - 1)
        self.latent_channels = int(config["latent_channels"])

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        posterior = self.vae.encode(images.to(self.dtype)).latent_dist
        z = posterior.mean if generator is None else posterior.sample(generator)
        return (z * self.scaling_factor).float()  # (B, latent_channels, h, w)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode((latents / self.scaling_factor).to(self.dtype)).sample.float()  # (B, 3, H, W)
