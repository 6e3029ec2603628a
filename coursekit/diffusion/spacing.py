"""Which of the T training timesteps a sampler with N < T steps visits.

The three spacings of Lin et al., "Common diffusion noise schedules and sample steps are flawed"
(WACV 2024, Table 2), computed exactly as diffusers computes them (numpy rounding, half to even):

* ``leading``:  t_i = i * (T // N) + offset, i = N-1..0   (DDIM's original choice; SD adds offset 1)
* ``trailing``: round(T - i * T / N) - 1, i = 0..N-1       (always starts at T - 1)
* ``linspace``: round(linspace(0, T - 1, N)), reversed      (starts at T - 1, ends at 0)
"""

from __future__ import annotations

import numpy as np
import torch

from .._checks import check_choice, check_int

SPACINGS = ("leading", "trailing", "linspace")


def timesteps(num_steps: int, T: int, spacing: str = "leading", offset: int = 0) -> torch.Tensor:
    """The descending int64 timesteps a sampler with ``num_steps`` steps visits.

    ``offset`` (diffusers' ``steps_offset``) shifts ``leading`` spacing only; diffusers ignores it
    for the other two, so a non-zero offset with them is an error here rather than silently dropped.
    """
    check_int("T", T, 2)
    check_int("num_steps", num_steps, 1, T + 1)
    check_choice("spacing", spacing, SPACINGS)
    check_int("offset", offset, 0)
    if offset and spacing != "leading":
        raise ValueError(f"offset applies to 'leading' spacing only, got offset={offset} with spacing={spacing!r}")
    if spacing == "leading":
        ts = (np.arange(0, num_steps) * (T // num_steps)).round()[::-1].astype(np.int64) + offset
    elif spacing == "trailing":
        ts = np.round(np.arange(T, 0, -T / num_steps)).astype(np.int64) - 1
    else:
        ts = np.linspace(0, T - 1, num_steps).round()[::-1].astype(np.int64)
    if ts.max() >= T:
        raise ValueError(f"offset={offset} pushes the first timestep to {ts.max()}, outside [0, {T})")
    return torch.from_numpy(ts.copy())
