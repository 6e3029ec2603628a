"""Benchmarks (``coursekit bench``): measured throughput, reported with the machine that gave it.

Performance claims in the course come from here, not from timed tests.
"""

from __future__ import annotations

import os
import platform
import time

import torch

from ._checks import check_float, check_int
from .data.shapes import ShapesWorld


def machine() -> dict:
    """What the numbers were measured on."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def bench_shapes(resolution: int = 32, batch: int = 1024, seconds: float = 3.0, max_objects: int = 2) -> dict:
    """Images per second of the shapes world (sampling scenes and rendering images + masks) on CPU."""
    check_int("batch", batch, 1)
    check_float("seconds", seconds, 0.1)
    world = ShapesWorld(resolution=resolution, max_objects=max_objects)
    world.render(world.sample(batch, seed=0))  # warm-up
    n, seed, start = 0, 1, time.perf_counter()
    while time.perf_counter() - start < seconds:
        world.render(world.sample(batch, seed=seed))
        n, seed = n + batch, seed + 1
    elapsed = time.perf_counter() - start
    return {"benchmark": "shapes", "resolution": resolution, "batch": batch, "max_objects": max_objects,
            "images": n, "seconds": round(elapsed, 3), "images_per_s": round(n / elapsed, 1)}


BENCHMARKS = {"shapes": bench_shapes}
