"""eDiff-I's ensemble of expert denoisers: one network per interval of noise levels.

Balaji et al., "eDiff-I: Text-to-Image Diffusion Models with an Ensemble of Expert Denoisers",
2022, sec. 4: the denoiser behaves differently at high noise (laying out the image from the text)
and at low noise (adding detail), so one model is trained on all levels, then copied, and each copy
is fine-tuned on its own interval. Sampling costs the same as with one model: each step calls
exactly one expert.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from .._checks import check_boundaries, check_choice, check_int, check_tensor, check_timesteps
from ..diffusion.forward import prediction_type_of


def _route(which: torch.Tensor, calls: Sequence, x: torch.Tensor, t: torch.Tensor, conds: Sequence) -> torch.Tensor:
    """Call ``calls[k](x[sel], t[sel], conds[k][sel])`` for the samples whose ``which`` is k (a tensor cond is split
    along the batch, anything else passed whole) and put the outputs back in batch order."""
    out = None
    for k, (call, cond) in enumerate(zip(calls, conds)):
        sel = which == k
        if not bool(sel.any()):
            continue
        part = call(x[sel], t[sel], cond[sel] if isinstance(cond, torch.Tensor) else cond)
        if out is None:
            out = part.new_empty(x.shape[:1] + part.shape[1:])
        out[sel] = part
    return out


def tree_boundaries(T: int, levels: int, side: str = "high") -> list[int]:
    """The boundaries of eDiff-I's binary tree of experts (Balaji et al. 2022, sec. 4.1): the shared model's interval
    [0, T) is halved, then the half at the ``side`` end ("high" noise, "low" noise, or "both" ends) is halved again,
    ``levels`` times in all; the paper grows only the extreme nodes, where the denoiser's task is most its own.
    With t drawn uniformly in training, halving t halves the training distribution's mass. E.g. (1000, 2) ->
    [500, 750] ("high"), [250, 500] ("low"), [250, 500, 750] ("both")."""
    check_int("T", T, 2)
    check_int("levels", levels, 1)
    check_choice("side", side, ("high", "low", "both"))
    if T >> levels == 0:
        raise ValueError(f"levels must leave every interval at least one timestep: 2 ** levels <= T = {T}, "
                         f"got {levels}")
    high = [T - (T >> k) for k in range(1, levels + 1)]  # T/2, 3T/4, ...
    low = [T >> k for k in range(levels, 0, -1)]  # ..., T/4, T/2
    return {"high": high, "low": low, "both": sorted(set(high) | set(low))}[side]


class Experts(nn.Module):
    """A denoiser that sends each sample to the expert of its timestep's interval.

    ``boundaries`` b_1 < ... < b_{K-1} split [0, T) into K intervals; expert k handles
    b_k <= t < b_{k+1} (with b_0 = 0, b_K = T). Any tensor ``cond`` is split along the batch too.
    The experts must predict the same thing (their ``prediction_type``), which the ensemble then declares.
    """

    def __init__(self, experts: Sequence[nn.Module], boundaries: Sequence[int], T: int):
        super().__init__()
        check_boundaries("boundaries", boundaries, T)
        if len(experts) != len(boundaries) + 1:
            raise ValueError(f"experts must number len(boundaries) + 1 = {len(boundaries) + 1}, got {len(experts)}")
        kinds = {prediction_type_of(e) for e in experts}
        if len(kinds) > 1:
            raise ValueError(f"experts must share one prediction_type, got {sorted(kinds)}")
        self.prediction_type = kinds.pop()
        self.experts = nn.ModuleList(experts)
        self.register_buffer("boundaries", torch.tensor(list(boundaries), dtype=torch.long), persistent=False)
        self.T = T

    @classmethod
    def split(cls, model: nn.Module, boundaries: Sequence[int], T: int) -> Experts:
        """Copy a model trained on all levels into one expert per interval (to be fine-tuned on it)."""
        return cls([copy.deepcopy(model) for _ in range(len(boundaries) + 1)], boundaries, T)

    @classmethod
    def tree(cls, model: nn.Module, T: int, levels: int, side: str = "high") -> Experts:
        """``split`` at ``tree_boundaries(T, levels, side)``: eDiff-I's tree of experts copied from one model."""
        return cls.split(model, tree_boundaries(T, levels, side), T)

    @property
    def encoder(self) -> nn.Module:
        """The text encoder every expert shares (``zoo.build_model`` builds text experts so), which a ``Pipeline``
        encodes prompts with; experts with encoders of their own have none to name."""
        encoders = {id(getattr(e, "encoder", None)): getattr(e, "encoder", None) for e in self.experts}
        if len(encoders) != 1 or None in encoders.values():
            raise AttributeError("encoder: these experts do not share one text encoder")
        return next(iter(encoders.values()))

    def interval(self, k: int) -> tuple[int, int]:
        """[low, high) of the timesteps expert k handles."""
        check_int("k", k, 0, len(self.experts))
        edges = [0, *self.boundaries.tolist(), self.T]
        return edges[k], edges[k + 1]

    def expert_of(self, t: torch.Tensor) -> torch.Tensor:
        """Index of the expert for each timestep."""
        return torch.bucketize(t, self.boundaries.to(t.device), right=True)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        check_tensor("x", x, finite=False)
        t = check_timesteps("t", t, self.T, batch=x.shape[0]).expand(x.shape[0])
        return _route(self.expert_of(t), self.experts, x, t, [cond] * len(self.experts))


class ConditionSwitch:
    """One denoiser under a different condition on each interval of noise levels: ``conds[k]`` for
    b_k <= t < b_{k+1} (b_0 = 0, b_K = T; so ``conds[-1]`` rules the noisiest levels, which sampling visits
    first). The sampler must pass cond None.

    A tensor cond holds one row per sample of the batch. eDiff-I (Balaji et al. 2022, sec. 4) observes that a
    text-to-image denoiser reads the text while the noise is high and hardly at all late; sampling under caption A
    down to a level and under B after it measures when each attribute is decided (``coursekit report
    caption_switch``: on shapes-unet the layout early, colour, shape and size only near t = 200). It is an ensemble
    of experts in which every expert is the same network, routed as ``Experts`` routes. ``denoiser`` may be guided:
    ``pipe.guided(3.0)`` with text features as the conds keeps classifier-free guidance against the empty caption.
    """

    def __init__(self, denoiser, boundaries: Sequence[int], conds: Sequence, T: int):
        if not callable(denoiser):
            raise ValueError(f"denoiser must be callable (x, t, cond), got {type(denoiser).__name__}")
        check_boundaries("boundaries", boundaries, T)
        if isinstance(conds, str) or not isinstance(conds, Sequence) or len(conds) != len(boundaries) + 1:
            raise ValueError(f"conds must be a list of len(boundaries) + 1 = {len(boundaries) + 1} conditions, got "
                             f"{len(conds) if isinstance(conds, Sequence) else type(conds).__name__}")
        self.denoiser, self.conds, self.T = denoiser, list(conds), T
        self.boundaries = torch.tensor(list(boundaries), dtype=torch.long)
        self.prediction_type = prediction_type_of(denoiser)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        if cond is not None:
            raise ValueError("cond must be None: a ConditionSwitch brings its own conds, one per interval")
        check_tensor("x", x, finite=False)
        t = check_timesteps("t", t, self.T, batch=x.shape[0]).expand(x.shape[0])
        which = torch.bucketize(t, self.boundaries.to(t.device), right=True)
        return _route(which, [self.denoiser] * len(self.conds), x, t, self.conds)
