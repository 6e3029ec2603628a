"""What a number was measured on: benchmark reports and model cards both record it."""

from __future__ import annotations

import os
import platform

import torch


def machine() -> dict:
    """The CPU, its core count, torch's threads and version, and the CUDA device if there is one."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
