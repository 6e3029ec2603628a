"""The judge: a CNN that reads every attribute of a shapes image back, so generated images can be scored.

For each of the 9 grid cells it predicts whether an object is there and, if so, its shape, colour
and size; and it predicts the background. Trained on endless fresh procedural scenes, so it cannot
overfit; its own accuracy is measured on scenes it never saw (``evaluate.classifier_accuracy``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_choice, check_int, check_tensor
from ..data.shapes import BACKGROUNDS, COLOURS, POSITIONS, SHAPES, SIZES, Scenes

HEADS = {"presence": 2, "shape": len(SHAPES), "colour": len(COLOURS), "size": len(SIZES)}
CELLS = len(POSITIONS)


def cell_targets(scenes: Scenes) -> dict[str, torch.Tensor]:
    """Per-cell labels (B, 9): presence 0/1, and shape, colour, size where an object is (-1 elsewhere);
    background (B,)."""
    if not isinstance(scenes, Scenes):
        raise ValueError(f"scenes must be Scenes, got {type(scenes).__name__}")
    B, device = len(scenes), scenes.present.device
    out = {"presence": torch.zeros(B, CELLS, dtype=torch.long, device=device)}
    for name in ("shape", "colour", "size"):
        out[name] = torch.full((B, CELLS), -1, dtype=torch.long, device=device)
    rows, slots = scenes.present.nonzero(as_tuple=True)
    cells = scenes.position[rows, slots]
    out["presence"][rows, cells] = 1
    for name in ("shape", "colour", "size"):
        out[name][rows, cells] = getattr(scenes, name)[rows, slots]
    out["background"] = scenes.background.clone()
    return out


class ShapesClassifier(nn.Module):
    """Three conv stages (32, 16, 8 px) of GroupNorm-SiLU-conv pairs, then an MLP to per-cell logits."""

    def __init__(self, resolution: int = 32, width: int = 32):
        super().__init__()
        self.resolution = check_int("resolution", resolution, 8)
        if resolution % 4:
            raise ValueError(f"resolution must be a multiple of 4, got {resolution}")
        check_int("width", width, 8)

        def stage(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.GroupNorm(8, c_out), nn.SiLU(),
                    nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.SiLU()]

        self.features = nn.Sequential(*stage(3, width, 1), *stage(width, 2 * width, 2), *stage(2 * width, 4 * width, 2))
        flat = 4 * width * (resolution // 4) ** 2
        self.per_cell = sum(HEADS.values())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, 256), nn.SiLU(),
                                  nn.Linear(256, CELLS * self.per_cell + len(BACKGROUNDS)))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits: presence (B, 9, 2), shape (B, 9, 4), colour (B, 9, 6), size (B, 9, 2), background (B, 3)."""
        check_tensor("images", images, shape=(None, 3, self.resolution, self.resolution))
        out = self.head(self.features(images))  # (B, 9 * 14 + 3)
        cells, background = out[:, :-len(BACKGROUNDS)], out[:, -len(BACKGROUNDS):]
        parts = cells.reshape(-1, CELLS, self.per_cell).split(list(HEADS.values()), dim=-1)
        return {**dict(zip(HEADS, parts)), "background": background}

    def background_log_prob(self, images: torch.Tensor, background: str) -> torch.Tensor:
        """log p(background | image) for each image (B,), differentiable in the images: a score that
        classifier guidance can climb (``diffusion.UniversalGuidance``, lesson 03)."""
        check_choice("background", background, tuple(BACKGROUNDS))
        return torch.log_softmax(self(images)["background"], dim=-1)[:, list(BACKGROUNDS).index(background)]

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The most likely label of every head; shape, colour and size are -1 in cells predicted empty."""
        logits = self(images)
        pred = {name: value.argmax(-1) for name, value in logits.items()}
        for name in ("shape", "colour", "size"):
            pred[name] = torch.where(pred["presence"] == 1, pred[name], -1)
        return pred



def classifier_loss(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum of the heads' cross-entropies; attributes count only in cells that hold an object."""
    total = F.cross_entropy(logits["background"], targets["background"].to(logits["background"].device))
    for name in HEADS:
        target = targets[name].to(logits[name].device).flatten()
        total = total + F.cross_entropy(logits[name].flatten(0, 1), target, ignore_index=-1)
    return total
