"""What a number was measured on (benchmark reports and model cards both record it), and what a block of code cost
(``Meter``: its time and peak memory)."""

from __future__ import annotations

import os
import platform
import time

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


def _status_kb(field: str) -> int | None:
    """A field of ``/proc/self/status`` in kB (Linux), None elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class Meter:
    """Wall time and peak memory of a block of code, on ``device`` ("cpu" or a CUDA device):

        with Meter("cuda") as m:
            ...
        m.seconds, m.peak_mb, m.added_mb

    On CUDA, ``peak_mb`` is the most memory torch's tensors held on the device during the block (the loaded model's
    weights included; ``torch.cuda.max_memory_allocated`` after a reset) and ``added_mb`` that less what they held at
    its start. On the CPU it is the process's peak resident memory during the block (Linux: the high-water mark
    ``VmHWM``, reset at the start by writing 5 to ``/proc/self/clear_refs``), everything the process holds included;
    where that reset is not possible (macOS, Windows, a locked-down ``/proc``) both are None. The block's time comes
    after the device has finished its queued work (CUDA is synchronised at both ends)."""

    def __init__(self, device: str | torch.device = "cpu"):
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as error:
            raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda', got {device!r}") from error
        if self.device.type not in ("cpu", "cuda"):
            raise ValueError(f"device must be a CPU or CUDA device, got {device!r}")
        self.seconds = self.peak_mb = self.added_mb = None

    def __enter__(self) -> "Meter":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            self._start = None
            try:
                with open("/proc/self/clear_refs", "w") as refs:
                    refs.write("5")
                self._start = _status_kb("VmRSS") * 1024
            except (OSError, TypeError):
                pass
        self._clock = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = None if self._start is None else _status_kb("VmHWM") * 1024
        self.seconds = time.perf_counter() - self._clock
        if peak is not None:
            self.peak_mb, self.added_mb = peak / 2**20, (peak - self._start) / 2**20
