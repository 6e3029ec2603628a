"""Null-text inversion: make guided sampling retrace a DDIM inversion by tuning the unconditional input.

Mokady, Hertz, Aberman, Pritch & Cohen-Or, "Null-text Inversion for Editing Real Images using Guided
Diffusion Models", CVPR 2023, Algorithm 1. DDIM inversion is exact only without guidance: at scale w > 1
each guided step departs from the inverted ("pivot") trajectory z*_T ... z*_0 and the errors compound.
So invert once at w = 1, then walk down from z_T = z*_T and, at each step t, optimise the unconditional
text features (the "null text" embedding, initialised with the previous step's) so that the guided DDIM step

    z_{t-1}(z_t, null_t, C) = DDIM(z_t, eps(z_t, null_t) + w (eps(z_t, C) - eps(z_t, null_t)))

lands on the pivot:  min_{null_t} || z*_{t-1} - z_{t-1}(z_t, null_t, C) ||^2,  N Adam iterations;
then take the step with the optimised null_t. The network is frozen; only the (B, L, width) features
move. The paper's code (``null_text_w_ptp.ipynb``): w = 7.5, N = 10, 50 steps, Adam at lr 1e-2 (1 - i / 100) at
step i, and after each update it stops early once the loss (before that update) was below 1e-5 + 2e-5 i. Here the
decay and the threshold are written per share of the run, i / (2 S) and 1e-3 i / S, which are the paper's at S = 50
and stay positive for any S; the learning rate defaults to the pipeline's (``Defaults.null_text_lr``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from .._checks import check_float, check_int
from ..diffusion import ClassifierFreeGuidance
from ..pipeline import Pipeline, check_pipeline
from .inversion import Inversion, invert


def null_text_invert(pipe: Pipeline, image: torch.Tensor, prompt: Sequence[str] | None = None, *,
                     num_inference_steps: int = 50, guidance_scale: float | None = None, num_inner_steps: int = 10,
                     lr: float | None = None, early_stop_epsilon: float = 1e-5, progress: bool = False) -> Inversion:
    """Invert ``image`` at guidance 1 under ``prompt``, then optimise per-step unconditional features so that
    ``reconstruct`` at ``guidance_scale`` (None: the pipeline's default) retraces the inversion (``num_inner_steps``
    Adam steps per timestep at learning rate ``lr``, None: the pipeline's, decayed as in the paper; early stop at
    ``early_stop_epsilon``). Returns the pivot ``Inversion`` with ``guidance_scale`` and ``null_embeds`` set."""
    pipe = check_pipeline(pipe)
    guidance_scale = check_float("guidance_scale", pipe.defaults.guidance_scale if guidance_scale is None
                                 else guidance_scale)
    check_int("num_inner_steps", num_inner_steps, 0)
    lr = pipe.defaults.null_text_lr if lr is None else lr
    if check_float("lr", lr, 0.0) == 0:
        raise ValueError("lr must be > 0")
    check_float("early_stop_epsilon", early_stop_epsilon, 0.0)
    pivot = invert(pipe, image, prompt, num_inference_steps=num_inference_steps, guidance_scale=1.0)  # z*_T ... z*_0
    _, sampler = pipe.inversion_samplers(num_inference_steps)
    denoiser, schedule = pipe.denoiser, pipe.schedule
    with torch.no_grad():
        cond = pipe.text_features(pivot.prompt)
        null = pipe.text_features([""] * len(pivot.prompt))  # null_T: the empty caption's features
    x, null_embeds = pivot.noise, {}  # z_T = z*_T
    plan = sampler.plan(schedule.T)
    S = len(plan)
    for i, (t, prev_t) in enumerate(tqdm(plan, desc="null-text", disable=not progress)):
        target = pivot.latents[S - 1 - i]  # z*_{t-1}
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        with torch.no_grad():
            out_cond = denoiser(x, t_batch, cond)  # eps(z_t, C): the null text does not change it
        null = null.detach().clone().requires_grad_(True)  # null_t starts from null_{t+1}; Adam updates it in place
        optimizer = torch.optim.Adam([null], lr=lr * (1 - i / (2 * S)))
        for _ in range(num_inner_steps):
            out_null = denoiser(x, t_batch, null)
            guided = out_null + guidance_scale * (out_cond - out_null)
            x_prev, _ = sampler.step(guided, t, prev_t, x, schedule)
            loss = (x_prev - target).pow(2).flatten(1).mean(1)  # || z*_{t-1} - z_{t-1}(z_t, null_t, C) ||^2, per image
            (null.grad,) = torch.autograd.grad(loss.sum(), null)  # each image has its own null features
            optimizer.step()
            if loss.max().item() < early_stop_epsilon + 1e-3 * i / S:
                break
        with torch.no_grad():
            null = null.detach()
            null_embeds[t] = null
            # z_{t-1} = z_{t-1}(z_t, null_t, C): the guided step reconstruct takes, in one batched call as it does
            x, _ = sampler.step(ClassifierFreeGuidance(denoiser, guidance_scale, uncond=null)(x, t_batch, cond),
                                t, prev_t, x, schedule)
    pivot.guidance_scale, pivot.null_embeds = guidance_scale, null_embeds
    return pivot
