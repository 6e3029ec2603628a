"""Tiny, randomly initialised Stable Diffusion parts, made offline from a seed: what the SD tests compare on, and what
a lesson runs on where no weights can be loaded (its images are then noise; the code path is the real one).

The layouts are SD 1.5's and SD 2.1's shrunk (diffusers' own tests' ``get_dummy_components`` sizes), with their
real scheduler configs: SD 1.5 ships a PNDM config (epsilon), SD 2.1 a DDIM one with v-prediction, linear
projections and upcast attention. The CLIP tokenizer is written to a folder as vocab.json and merges.txt (the
route transformers 4 and 5 both load), with letters, their word-final forms and a few merges: words outside it
become the end-of-text token, so the captions here stay in a-z.
"""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

import torch

from ._checks import check_choice, check_int

# scheduler/scheduler_config.json as the checkpoints ship them
SD15_SCHEDULER = {"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
                  "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
                  "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None,
                  "clip_sample": False}
SD21_SCHEDULER = {"_class_name": "DDIMScheduler", "_diffusers_version": "0.8.0", "beta_end": 0.012,
                  "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
                  "num_train_timesteps": 1000, "prediction_type": "v_prediction", "set_alpha_to_one": False,
                  "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None}
LAYOUTS = {"sd15": dict(scheduler=SD15_SCHEDULER, linear=False, upcast=False),
           "sd21": dict(scheduler=SD21_SCHEDULER, linear=True, upcast=True)}
WORDS = ("a", "cat", "dog", "red", "blue", "on", "grass", "photo", "of", "the")
WIDTH = 32


def write_clip_tokenizer(folder: Path) -> Path:
    """A byte-pair CLIP tokenizer (vocab.json, merges.txt) for a-z words, written to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    tokens = ["<|startoftext|>", "<|endoftext|>", *string.ascii_lowercase, *(c + "</w>" for c in string.ascii_lowercase)]
    merges = []
    for word in WORDS:  # merge each word left to right: c a -> ca, ca t</w> -> cat</w>
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            merges.append(f"{pieces[0]} {pieces[1]}")
            pieces = [pieces[0] + pieces[1]] + pieces[2:]
            if pieces[0] not in tokens:
                tokens.append(pieces[0])
    merges = list(dict.fromkeys(merges))
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder


def tiny_parts(folder: Path | None = None, layout: str = "sd15", seed: int = 0, resolution: int = 32) -> dict:
    """unet, vae, text_encoder, tokenizer and scheduler_config of a tiny SD of ``layout`` ("sd15", "sd21"), the
    tokenizer's files written under ``folder`` (a new temporary folder when None); images are ``resolution`` square
    (a multiple of 4; 32 by default), latents 4 x resolution/2 x resolution/2 (the tiny VAE halves the side once),
    text 77 tokens of width 32. The weights do not depend on ``resolution`` (only the configs' sample sizes do).
    ``stable_diffusion.from_parts(**tiny_parts())`` is a pipeline."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    check_choice("layout", layout, tuple(LAYOUTS))
    if check_int("resolution", resolution, 8) % 4:
        raise ValueError(f"resolution must be a multiple of 4 (the tiny U-Net halves its latents once), got {resolution}")
    folder = Path(tempfile.mkdtemp(prefix="coursekit-tiny-sd-")) if folder is None else Path(folder)
    spec = LAYOUTS[layout]
    tokenizer = CLIPTokenizer.from_pretrained(str(write_clip_tokenizer(folder / "tokenizer")), model_max_length=77)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=resolution // 2, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=WIDTH, attention_head_dim=(2, 4), norm_num_groups=32,
        use_linear_projection=spec["linear"], upcast_attention=spec["upcast"]).eval()
    vae = AutoencoderKL(block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        sample_size=resolution).eval()
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=tokenizer.convert_tokens_to_ids("<|startoftext|>"), eos_token_id=eos, pad_token_id=eos,
        hidden_size=WIDTH, intermediate_size=37, layer_norm_eps=1e-5, num_attention_heads=4, num_hidden_layers=2,
        vocab_size=len(tokenizer), max_position_embeddings=77)).eval()
    return dict(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                scheduler_config=dict(spec["scheduler"]))


def diffusers_pipeline(parts: dict, cls_name: str = "StableDiffusionPipeline"):
    """A diffusers pipeline of class ``cls_name`` over the parts, with a DDIM scheduler made from their config (and
    DiffEdit's inverse scheduler), no safety checker."""
    import diffusers

    scheduler = diffusers.DDIMScheduler.from_config(parts["scheduler_config"])
    kwargs = dict(vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"], unet=parts["unet"],
                  scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    if cls_name == "StableDiffusionDiffEditPipeline":
        kwargs["inverse_scheduler"] = diffusers.DDIMInverseScheduler.from_config(parts["scheduler_config"])
    pipe = getattr(diffusers, cls_name)(**kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe
