"""A small MLP denoiser for 2-D toy data: trains in seconds on a CPU (lesson 06's DDIB between toys).

The usual flow-matching / DDIB toy network: the point and a time embedding are mapped to one width, then
residual SiLU-Linear blocks; no normalisation (2-D inputs need none). ``out = model(x_t, t, cond)`` with
``cond`` ignored (ARCHITECTURE.md, "The one protocol").
"""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_choice, check_int, check_tensor
from ..diffusion.forward import PREDICTION_TYPES
from .layers import TimestepMLP


class ToyMLP(nn.Module):
    def __init__(self, dim: int = 2, width: int = 128, depth: int = 3, prediction_type: str = "epsilon"):
        super().__init__()
        self.dim = check_int("dim", dim, 1)
        check_int("width", width, 1)
        self.prediction_type = check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
        self.inp = nn.Linear(dim, width)
        self.t_embed = TimestepMLP(64, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(width, width))
                                    for _ in range(check_int("depth", depth, 1)))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(width, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        check_tensor("x", x, shape=(None, self.dim))
        h = self.inp(x) + self.t_embed(t)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)
