"""Low-rank adaptation (LoRA) of a network's attention projections, applied without changing the network.

Hu, Shen, Wallis, Allen-Zhu, Li, Wang, Wang & Chen, "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022,
sec. 4.1: a frozen weight W0 (d_out x d_in) is used as W0 + (alpha / r) B A with A (r x d_in) and B (d_out x r),
r << d; A starts random, B at zero, so the adapted network starts as the original, and only A and B train: for Stable
Diffusion 1.5's U-Net (860M parameters), rank 4 on every attention projection is 0.80M parameters on diffusers' layers
and 0.65M on the course's, which keeps q, k and v in one layer (counted on its config).

Here the adapters live beside the network, not in it: ``applied(network)`` registers forward hooks that add
(alpha / r) B A x to each adapted layer's output while the ``with`` block runs and removes them after, so the
caller's network is never modified (no layer replaced, no weight copied) and is bitwise the original outside the
block. A and B are float32 whatever the network's dtype (an fp16 network trains its adapters in fp32).
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from .._checks import check_float, check_int
from ..diffusion.forward import prediction_type_of


def attention_projections(network: nn.Module) -> dict[str, nn.Linear]:
    """The Linear layers inside the network's attention modules (the course's ``layers.Attention``: qkv or q and kv,
    and out; diffusers' ``Attention``: to_q, to_k, to_v, to_out.0), by name."""
    found = {}
    for name, module in network.named_modules():
        if type(module).__name__ == "Attention":
            for child, layer in module.named_modules():
                if isinstance(layer, nn.Linear):
                    found[f"{name}.{child}"] = layer
    return found


class LoRA(nn.Module):
    """Rank-``rank`` adapters for the ``layers`` (name -> Linear) of one network; ``alpha`` / ``rank`` scales them
    (alpha = rank: scale 1). A is drawn from ``generator`` (Kaiming-uniform, as the paper's code), B is zero."""

    def __init__(self, layers: dict[str, nn.Linear], rank: int = 4, alpha: float | None = None,
                 generator: torch.Generator | None = None):
        super().__init__()
        if not layers or not all(isinstance(m, nn.Linear) for m in layers.values()):
            raise ValueError("layers must map names to at least one nn.Linear (e.g. attention_projections(network))")
        self.rank = check_int("rank", rank, 1)
        self.scale = check_float("alpha", float(rank) if alpha is None else alpha, 0.0) / rank
        self.names = list(layers)
        self.layers = list(layers.values())  # not sub-modules: the adapters own no weight of the network
        self.down, self.up = nn.ParameterList(), nn.ParameterList()
        for layer in self.layers:
            bound = 1 / math.sqrt(layer.in_features)  # kaiming_uniform_(a=sqrt(5)), nn.Linear's own initialisation
            A = (torch.rand(rank, layer.in_features, generator=generator) * 2 - 1) * bound
            self.down.append(nn.Parameter(A.to(layer.weight.device)))
            self.up.append(nn.Parameter(torch.zeros(layer.out_features, rank, device=layer.weight.device)))

    @contextlib.contextmanager
    def applied(self):
        """While the block runs, each adapted layer computes W0 x + b + (alpha / r) B A x."""
        handles = [layer.register_forward_hook(self._hook(i)) for i, layer in enumerate(self.layers)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _hook(self, i: int):
        def add_low_rank(module, inputs, output):
            x = inputs[0].float()
            return output + (x @ self.down[i].T @ self.up[i].T * self.scale).to(output.dtype)  # (..., d_out)
        return add_low_rank


class Adapted(nn.Module):
    """A denoiser run with ``lora`` applied: the same protocol, ``encoder`` and ``prediction_type`` as ``denoiser``;
    its own trainable parameters are the adapters'."""

    def __init__(self, denoiser: nn.Module, lora: LoRA):
        super().__init__()
        self.denoiser, self.lora = denoiser, lora

    @property
    def encoder(self) -> nn.Module:
        return self.denoiser.encoder

    @property
    def prediction_type(self) -> str:
        return prediction_type_of(self.denoiser)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond) -> torch.Tensor:
        with self.lora.applied():
            return self.denoiser(x, t, cond)
