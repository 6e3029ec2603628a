"""A small MLP denoiser for toy data: trains in seconds on a CPU (lesson 00's eps / x0 / v comparison,
lesson 06's DDIB between toys).

The usual flow-matching / DDIB toy network: the point and a time embedding are mapped to one width, then
residual SiLU-Linear blocks; no normalisation (low-dimensional inputs need none). ``out = model(x_t, t, cond)``
(ARCHITECTURE.md, "The one protocol"): ``cond`` is None, or with ``classes`` a (B,) class label whose learned
embedding is added to the time embedding's (as DDPM adds a class embedding), with label ``classes`` (or None)
the null class of classifier-free guidance.
"""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_choice, check_index, check_int, check_tensor
from ..diffusion.forward import PREDICTION_TYPES
from .layers import TimestepMLP


class ToyMLP(nn.Module):
    def __init__(self, dim: int = 2, width: int = 128, depth: int = 3, prediction_type: str = "epsilon",
                 classes: int | None = None):
        super().__init__()
        self.dim = check_int("dim", dim, 1)
        check_int("width", width, 1)
        self.prediction_type = check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
        self.inp = nn.Linear(dim, width)
        self.t_embed = TimestepMLP(64, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(width, width))
                                    for _ in range(check_int("depth", depth, 1)))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(width, dim))
        self.classes = None if classes is None else check_int("classes", classes, 1)
        self.label = nn.Embedding(classes + 1, width) if classes is not None else None  # last row: the null class

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        check_tensor("x", x, shape=(None, self.dim))
        h = self.inp(x) + self.t_embed(t)
        if self.classes is not None:
            if cond is None:
                cond = torch.full((x.shape[0],), self.classes, dtype=torch.long, device=x.device)
            check_tensor("cond", cond, shape=(x.shape[0],), floating=False)
            check_index("cond", cond, self.classes + 1)
            h = h + self.label(cond)
        elif cond is not None:
            raise ValueError("cond must be None for a ToyMLP without classes")
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)
