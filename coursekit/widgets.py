"""ipywidgets front-ends over plain functions (the lessons call the functions directly too).

Only APIs common to ipywidgets 7.7 (Colab) and 8 (JupyterLab) are used; sliders that trigger
computation use ``continuous_update=False``.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from ._checks import check_choice, check_int, check_same_shape, check_tensor, check_timesteps
from .diffusion import NoiseSchedule, predict_x0, q_sample
from .viz import show_images


def _on_click(show, button: str, **controls) -> widgets.interactive:
    """``widgets.interactive`` that runs ``show`` when ``button`` is pressed (sampling is slow), drawn once at its
    default settings on creation, so the widget never shows an empty output."""
    w = widgets.interactive(show, {"manual": True, "manual_name": button}, **controls)
    w.update()
    return w


def noised_and_denoised(x0: torch.Tensor, t: int, noise: torch.Tensor, denoiser, schedule: NoiseSchedule,
                        cond: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t, x0_hat): the images noised to level t, and the denoiser's one-shot estimate of x0 from them."""
    check_tensor("x0", x0, ndim=4)
    check_same_shape("noise", noise, "x0", x0)
    check_timesteps("t", t, schedule.T)
    x_t = q_sample(x0, t, noise, schedule)
    return x_t, predict_x0(denoiser, schedule, x_t, t, cond)


def show_denoising(x0, t, noise, denoiser, schedule, cond=None):
    """Rows: x0, x_t, x0_hat, for the images ``x0``; returns the figure."""
    x_t, x0_hat = noised_and_denoised(x0, t, noise, denoiser, schedule, cond)
    abar = schedule.alphas_cumprod[t].item()
    fig = show_images(torch.cat([x0, x_t, x0_hat]), ncols=len(x0), size=1.3,
                      suptitle=f"t = {t}, abar = {abar:.3f}: rows x0, x_t, x0_hat")
    return fig


def denoising_explorer(x0, noise, denoiser, schedule, cond=None, t: int = 500):
    """A slider over t showing ``show_denoising``; returns the widget (display it, or read ``.result``)."""
    check_timesteps("t", t, schedule.T)
    slider = widgets.IntSlider(value=t, min=0, max=schedule.T - 1, step=10, description="t",
                               continuous_update=False)

    def draw(t):
        fig = show_denoising(x0, t, noise, denoiser, schedule, cond)
        plt.show()
        return fig

    return widgets.interactive(draw, t=slider)


def describe(model: torch.nn.Module, inputs: tuple, types: tuple[type, ...]) -> dict:
    """Parameters, MACs per forward pass and the output shape of every submodule of ``types``."""
    from .models.counting import activation_shapes, count_macs, count_parameters

    return {"parameters": count_parameters(model), "macs": count_macs(model, *inputs),
            "shapes": activation_shapes(model, inputs, types)}


def unet_report(base: int = 128, levels: int = 4, layers: int = 2, attention_16: bool = True,
                transformer: bool = False, size: int = 32) -> dict:
    """``describe`` a U-Net built from a few knobs (widths base, 2 base, 2 base, ...; attention at 16x16)."""
    from .models.unet import Downsample, ResBlock, UNet, UNetConfig, Upsample

    check_int("levels", levels, 2, 5)
    channels = tuple([base] + [2 * base] * (levels - 1))
    attention = tuple(attention_16 and size // 2**i == 16 for i in range(levels))
    heads = tuple(max(1, c // 64) if transformer else 1 for c in channels)
    cfg = UNetConfig(channels=channels, attention=attention, heads=heads, layers_per_level=layers,
                     transformer=transformer, context_dim=128 if transformer else None)
    model = UNet(cfg).eval()
    cond = torch.zeros(1, 8, 128) if transformer else None
    inputs = (torch.zeros(1, 3, size, size), torch.zeros(1, dtype=torch.long), cond)
    return describe(model, inputs, (ResBlock, Downsample, Upsample))


def unet_explorer():
    """Widgets over ``unet_report``: parameters, MACs and the activation shape at every level."""
    controls = dict(
        base=widgets.IntSlider(value=128, min=32, max=192, step=32, description="base width", continuous_update=False),
        levels=widgets.IntSlider(value=4, min=2, max=4, description="levels", continuous_update=False),
        layers=widgets.IntSlider(value=2, min=1, max=3, description="blocks/level", continuous_update=False),
        attention_16=widgets.Checkbox(value=True, description="attention at 16x16"),
        transformer=widgets.Checkbox(value=False, description="spatial transformer + text"),
    )

    def show(**kw):
        report = unet_report(**kw)
        print(f"{report['parameters'] / 1e6:.2f} M parameters, {report['macs'] / 1e9:.2f} GMACs per 32x32 image")
        for name, shape in report["shapes"]:
            print(f"  {name:14s} -> {shape}")
        return report

    return widgets.interactive(show, **controls)


def dit_report(size: str = "S", patch: int = 2, image: int = 256) -> dict:
    """Parameters, tokens and GMACs of a DiT of Table 1 on ``image``-pixel images (latents of image / 8)."""
    from .models.counting import count_macs, count_parameters
    from .models.dit import DIT_SIZES, DiT, dit_size

    name = f"DiT-{size}/{patch}"
    if name not in DIT_SIZES:
        raise ValueError(f"size and patch must name one of {list(DIT_SIZES)}, got {name}")
    check_int("image", image, 8)
    latent = image // 8
    with torch.device("meta"):
        model = DiT(dit_size(name, input_size=latent))
        x, t = torch.zeros(1, 4, latent, latent), torch.zeros(1, dtype=torch.long)
    return {"name": name, "parameters": count_parameters(model), "tokens": model.cfg.tokens,
            "gmacs": count_macs(model, x, t, t) / 1e9}


def dit_explorer():
    """Widgets over ``dit_report``: how size and patch size set the compute of a DiT."""

    def show(size, patch, image):
        r = dit_report(size, patch, image)
        print(f"{r['name']}: {r['parameters'] / 1e6:.0f} M parameters, {r['tokens']} tokens, {r['gmacs']:.2f} GMACs")
        return r

    return widgets.interactive(
        show, size=widgets.Dropdown(options=["S", "B", "L", "XL"], value="S", description="size"),
        patch=widgets.Dropdown(options=[8, 4, 2], value=2, description="patch"),
        image=widgets.Dropdown(options=[256, 512], value=256, description="image px"))


def guidance_report(pipe, judge, scenes, scale: float, steps: int = 10, seed: int = 0) -> dict:
    """Images for the scenes' captions at guidance ``scale`` and, per image, whether the judge reads the
    caption's scene back from it (``evaluate.scene_accuracy``)."""
    from .evaluate import scene_accuracy

    images = pipe.generate(scenes.captions(), guidance_scale=scale, num_inference_steps=steps, seed=seed)
    correct = scene_accuracy(judge.predict(images.clamp(-1, 1)), scenes)
    return {"images": images, "correct": correct}


def guidance_explorer(pipe, judge, scenes, steps: int = 10):
    """A guidance-scale slider and a Sample button over ``guidance_report`` (drawn at guidance 3 on creation; then
    sampling waits for the click)."""

    def show(scale):
        report = guidance_report(pipe, judge, scenes, scale, steps)
        ok = report["correct"]["joint"].tolist()
        show_images(report["images"], titles=["right" if good else "wrong" for good in ok], size=1.6,
                    suptitle=f"guidance {scale}: {sum(ok)}/{len(ok)} scenes read back right")
        plt.show()
        return report

    scale = widgets.FloatSlider(value=3.0, min=0.0, max=8.0, step=0.5, description="guidance")
    return _on_click(show, "Sample", scale=scale)


def round_trip(pipe, image: torch.Tensor, prompt, *, num_inference_steps: int, guidance_scale: float = 1.0) -> dict:
    """DDIM-invert ``image`` under its ``prompt`` and decode it back: the noise, the reconstruction and the per-image
    PSNR (``editing.invert``, ``editing.reconstruct``)."""
    from .editing import invert, reconstruct
    from .evaluate import psnr

    inv = invert(pipe, image, prompt, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale)
    back = reconstruct(pipe, inv)
    return {"noise": inv.noise, "reconstruction": back, "psnr": psnr(back, image)}


def inversion_explorer(pipe, images: torch.Tensor, captions):
    """Pick an image, a step count and a guidance scale, press Invert: the image, its DDIM latent x_T, the
    reconstruction from x_T and 10x their difference, with the round trip's PSNR (drawn for image 0 at 10 steps on
    creation)."""
    check_tensor("images", images, ndim=4)

    def show(image, steps, guidance):
        one = images[image:image + 1]
        r = round_trip(pipe, one, [captions[image]], num_inference_steps=steps, guidance_scale=guidance)
        error = ((r["reconstruction"] - one) * 10).clamp(-1, 1)
        show_images(torch.cat([one, r["noise"].clamp(-1, 1), r["reconstruction"].clamp(-1, 1), error]), size=1.8,
                    titles=["image", "x_T (clipped)", "reconstruction", "10 x difference"],
                    suptitle=f"{steps} steps, guidance {guidance}: PSNR {r['psnr'].item():.1f} dB")
        plt.show()
        return r

    return _on_click(
        show, "Invert",
        image=widgets.IntSlider(value=0, min=0, max=len(images) - 1, description="image"),
        steps=widgets.Dropdown(options=[2, 5, 10, 20, 50, 100], value=10, description="steps"),
        guidance=widgets.Dropdown(options=[1.0, 3.0, 7.5], value=1.0, description="guidance"))


def stroke_guide(preset: str, colour: str = "as drawn", dx: float = 0.0, dy: float = 0.0) -> torch.Tensor:
    """A stroke preset (``data.strokes.PRESETS``) recoloured (a course colour name, or "as drawn") and moved by
    (dx, dy) image fractions: the guide image (1, 3, 32, 32)."""
    from .data import COLOURS
    from .data.strokes import PRESETS, Stroke, draw

    check_choice("preset", preset, PRESETS)
    check_choice("colour", colour, ("as drawn", *COLOURS))
    background, strokes = PRESETS[preset]
    moved = [Stroke(tuple((x + dx, y + dy) for x, y in s.points), s.colour if colour == "as drawn" else COLOURS[colour],
                    s.width) for s in strokes]
    return draw(moved, background)[None]


def sdedit_explorer(pipe, steps: int = 25):
    """Pick a stroke preset, recolour and move it, choose ``strength`` (the title gives its t0) and a caption, press
    Run: the painting and what SDEdit makes of it (drawn for the first preset on creation). A caption with a word the
    model does not know is refused with its message."""
    from .data import COLOURS
    from .data.strokes import PRESETS
    from .editing import sdedit
    from .editing.sdedit import entry_level

    check_int("steps", steps, 1)

    def show(preset, colour, dx, dy, strength, caption, seed):
        guide = stroke_guide(preset, colour, dx, dy)
        try:
            out = sdedit(pipe, guide, [caption], strength=strength, num_inference_steps=steps, guidance_scale=1.0,
                         seed=seed)
        except ValueError as error:
            print(error)
            return None
        t0 = entry_level(pipe, steps, strength)
        show_images(torch.cat([guide, out.clamp(-1, 1)]), size=2.4,
                    titles=["painting", f"SDEdit, strength {strength:.2f} (t0 = {t0})"],
                    suptitle=caption or "(empty caption)")
        plt.show()
        return out

    move = dict(min=-0.3, max=0.3, step=0.05, continuous_update=False)
    return _on_click(
        show, "Run SDEdit",
        preset=widgets.Dropdown(options=list(PRESETS), description="strokes"),
        colour=widgets.Dropdown(options=["as drawn", *COLOURS], description="colour"),
        dx=widgets.FloatSlider(value=0.0, description="move right", **move),
        dy=widgets.FloatSlider(value=0.0, description="move down", **move),
        strength=widgets.FloatSlider(value=0.5, min=0.05, max=1.0, step=0.05, description="strength",
                                     continuous_update=False),
        caption=widgets.Text(value="", description="caption"),
        seed=widgets.IntText(value=0, description="seed"))


def mask_threshold(guide: torch.Tensor, region: torch.Tensor, ratio: float) -> dict:
    """DiffEdit's mask at threshold ``ratio`` (``editing.mask_from_map``) for difference maps ``guide`` (B, 1, H, W),
    and its IoU with the true edit ``region`` (B, 1, H, W) per image."""
    from .editing import mask_from_map
    from .evaluate import mask_iou

    check_tensor("guide", guide, ndim=4)
    mask = mask_from_map(guide, ratio)
    return {"mask": mask, "iou": mask_iou(mask, region)}


def diffedit_threshold_explorer(images: torch.Tensor, guide: torch.Tensor, region: torch.Tensor):
    """Pick an edit and move the threshold ratio: the image, DiffEdit's difference map, the mask (pixels whose
    difference exceeds ratio / 2 x the map's mean) and the true edit region, with the mask's IoU."""
    check_tensor("images", images, ndim=4)
    check_tensor("guide", guide, shape=(images.shape[0], 1, *images.shape[2:]))
    check_tensor("region", region, shape=tuple(guide.shape))

    def show(edit, ratio):
        r = mask_threshold(guide[edit:edit + 1], region[edit:edit + 1], ratio)
        heat = guide[edit:edit + 1] / guide[edit].max() * 2 - 1
        show_images(torch.cat([images[edit:edit + 1], heat.expand(-1, 3, -1, -1), r["mask"].expand(-1, 3, -1, -1) * 2 - 1,
                               region[edit:edit + 1].expand(-1, 3, -1, -1) * 2 - 1]), size=1.9,
                    titles=["image", "|eps_Q - eps_R|", f"mask, ratio {ratio:g}", "true region"],
                    suptitle=f"edit {edit}: IoU {r['iou'].item():.2f}")
        plt.show()
        return r

    return widgets.interactive(
        show, edit=widgets.IntSlider(value=0, min=0, max=len(images) - 1, description="edit"),
        ratio=widgets.FloatSlider(value=3.0, min=1.0, max=10.0, step=0.5, description="ratio",
                                  continuous_update=False))


def imagic_explorer(result, image: torch.Tensor, steps: int = 25):
    """Move eta: Imagic's stage 3 for a fitted ``result`` (``editing.imagic``) beside the input ``image`` (1, C, R, R),
    with the PSNR between them; the noise is fixed by ``seed``."""
    from .evaluate import psnr

    check_tensor("image", image, ndim=4)
    check_int("steps", steps, 1)

    def show(eta, seed):
        out = result.generate([eta], num_inference_steps=steps, seed=seed).clamp(-1, 1)
        show_images(torch.cat([image, out]), size=2.4, titles=["input", f"eta = {eta:.1f}"],
                    suptitle=f"{result.prompt}\nPSNR to the input {psnr(out, image).item():.1f} dB")
        plt.show()
        return out

    return widgets.interactive(
        show, eta=widgets.FloatSlider(value=0.6, min=0.0, max=1.0, step=0.1, description="eta", continuous_update=False),
        seed=widgets.IntText(value=0, description="seed"))
