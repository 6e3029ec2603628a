"""Training: the DDPM loop (Ho et al. 2020, Algorithm 1), small enough to run in a lesson.

``train`` takes a model, a schedule and a function that returns the batch of a given step, and
returns the loss of every step. It is deterministic given ``seed`` (timesteps and noise come from
its own generator) and uses AdamW, fused on CUDA.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ._checks import check_choice, check_float, check_int
from .diffusion.loss import diffusion_loss
from .diffusion.schedules import NoiseSchedule

Batches = Callable[[int], tuple[torch.Tensor, Any]]  # step -> (x0, cond)


def make_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.0) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter, ICLR 2019) over the trainable parameters: the fused kernel on CUDA,
    the multi-tensor ("foreach") one elsewhere (torch's CPU default updates one tensor at a time)."""
    check_float("lr", lr, 0.0)
    check_float("weight_decay", weight_decay, 0.0)
    params = [p for p in model.parameters() if p.requires_grad]
    if bool(params) and params[0].is_cuda:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=True)


def train(
    model: nn.Module,
    schedule: NoiseSchedule,
    batches: Batches,
    steps: int,
    *,
    lr: float = 1e-3,
    seed: int = 0,
    t_range: tuple[int, int] | None = None,
    grad_clip: float | None = 1.0,
    precision: str = "fp32",
    progress: bool = True,
) -> list[float]:
    """Run ``steps`` steps of gradient descent on ``diffusion_loss``; returns the per-step losses.

    ``precision="bf16"`` runs the forward pass under bf16 autocast (weights and optimizer stay fp32):
    on GPUs, and on CPUs with native bf16 (AVX512-BF16, AMX), about twice the throughput.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(batches):
        raise ValueError("batches must be a function step -> (x0, cond)")
    check_int("steps", steps, 1)
    check_choice("precision", precision, ("fp32", "bf16"))
    device = next(model.parameters()).device.type
    if grad_clip is not None:
        check_float("grad_clip", grad_clip, 0.0)
    optimizer = make_optimizer(model, lr)
    generator = torch.Generator().manual_seed(check_int("seed", seed, 0))
    model.train()
    losses = []
    for step in tqdm(range(steps), desc="train", disable=not progress):
        x0, cond = batches(step)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = diffusion_loss(model, schedule, x0, cond, generator=generator, t_range=t_range)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses
