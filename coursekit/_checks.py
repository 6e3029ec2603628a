"""Input checks shared by every public function.

Each check raises a ``ValueError`` that names the argument and says what was expected; nothing
is silently repaired (clipped, cast, resized).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def check_choice(name: str, value, choices: Sequence):
    """``value`` must be one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_int(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """``value`` must be an integer (not a bool) with ``low <= value < high``."""
    if isinstance(value, torch.Tensor) and value.ndim == 0 and not value.is_floating_point():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value >= high:
        raise ValueError(f"{name} must be < {high}, got {value}")
    return value


def check_float(name: str, value, low: float | None = None, high: float | None = None) -> float:
    """``value`` must be a finite real number with ``low <= value <= high``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def check_tensor(
    name: str,
    x,
    *,
    ndim: int | Sequence[int] | None = None,
    shape: Sequence[int | None] | None = None,
    floating: bool = True,
    finite: bool = True,
) -> torch.Tensor:
    """``x`` must be a tensor with the given number of dimensions / shape (``None`` = any size).

    ``floating`` requires a floating dtype (an integer dtype otherwise); ``finite`` rejects NaN and inf
    where reading the values is cheap (``values_checkable``: CPU tensors): on an accelerator the check
    would wait for the device, and sampling and training loops run without a single such wait
    (``tests/test_device_reads.py``).
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            raise ValueError(
                f"{name} must have {' or '.join(map(str, allowed))} dimensions, got shape {tuple(x.shape)}"
            )
    if shape is not None:
        if x.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    if floating and not x.is_floating_point():
        raise ValueError(f"{name} must have a floating dtype, got {x.dtype}")
    if not floating and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        raise ValueError(f"{name} must have an integer dtype, got {x.dtype}")
    if finite and x.is_floating_point() and values_checkable(x):
        check_finite(name, x)
    return x


def check_finite(name: str, x: torch.Tensor) -> torch.Tensor:
    """``x`` must hold no NaN or inf, on any device (on an accelerator this waits for it)."""
    if x.is_floating_point() and x.device.type != "meta" and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must be finite, but it holds NaN or inf")
    return x


def check_timesteps(name: str, t, T: int, batch: int | None = None) -> torch.Tensor:
    """``t`` must be integer timesteps in ``[0, T)``: a Python int, a 0-d or a ``(batch,)`` tensor."""
    if isinstance(t, int) and not isinstance(t, bool):
        t = torch.tensor(t)
    check_tensor(name, t, ndim=(0, 1), floating=False)
    if batch is not None and t.ndim == 1 and t.shape[0] != batch:
        raise ValueError(f"{name} must have shape ({batch},) to match the batch, got {tuple(t.shape)}")
    check_index(name, t, T)
    return t


def values_checkable(x: torch.Tensor) -> bool:
    """Whether checking ``x``'s values is cheap: a CPU tensor, outside ``torch.compile``. On an
    accelerator the check would stall the pipeline with a host synchronisation (an out-of-range
    index there still fails loudly, in the embedding lookup); meta tensors have no values."""
    return x.device.type == "cpu" and not torch.compiler.is_compiling()


def check_boundaries(name: str, boundaries: Sequence[int], T: int) -> None:
    """Timestep boundaries b_1 < ... < b_{K-1} splitting [0, T) into intervals: increasing ints strictly inside (0, T)."""
    check_int("T", T, 2)
    edges = [0, *boundaries, T]
    if any(not isinstance(b, int) or isinstance(b, bool) for b in boundaries) or \
            any(a >= b for a, b in zip(edges, edges[1:])):
        raise ValueError(f"{name} must be increasing ints strictly inside (0, {T}), got {list(boundaries)}")


def check_index(name: str, x: torch.Tensor, high: int) -> None:
    """Integer tensor ``x`` must hold values in [0, high) (checked where ``values_checkable``)."""
    if x.numel() and values_checkable(x) and (int(x.min()) < 0 or int(x.max()) >= high):
        raise ValueError(f"{name} must lie in [0, {high}), got values in [{int(x.min())}, {int(x.max())}]")


def check_mask(name: str, mask, batch: int, size: tuple[int, int]) -> torch.Tensor:
    """A mask (``batch`` or 1, 1, H, W) with values in [0, 1] (checked where ``values_checkable``)."""
    check_tensor(name, mask, shape=(None, 1, *size))
    if mask.shape[0] not in (1, batch):
        raise ValueError(f"{name} must have batch 1 or {batch}, got {mask.shape[0]}")
    if values_checkable(mask) and mask.numel() and (mask.min() < 0 or mask.max() > 1):
        raise ValueError(f"{name} must lie in [0, 1], got [{mask.min():.3f}, {mask.max():.3f}]")
    return mask


def check_same_shape(name: str, x: torch.Tensor, other_name: str, other: torch.Tensor) -> None:
    """``x`` must have the shape of ``other``."""
    if x.shape != other.shape:
        raise ValueError(f"{name} must have the shape of {other_name} {tuple(other.shape)}, got {tuple(x.shape)}")


def check_generator(name: str, generator) -> None:
    """``generator`` must be ``None`` or a ``torch.Generator``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"{name} must be a torch.Generator or None, got {type(generator).__name__}")


def generator_from(seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    """The generator to draw from: a new CPU one seeded with ``seed``, or ``generator`` (exactly one)."""
    check_generator("generator", generator)
    if (seed is None) == (generator is None):
        raise ValueError("give exactly one of seed and generator")
    return generator if seed is None else torch.Generator().manual_seed(check_int("seed", seed, 0))


def check_config_keys(config, owner: str, *, mapped=(), required=None, inert=(), defaults=None) -> None:
    """Implement or refuse, key by key, a configuration read from another library (diffusers).

    Every key of ``config`` must be ``mapped`` (read into coursekit's own config, which checks it),
    ``inert`` (no effect on the numbers, e.g. a nominal sample size), or in ``required`` with the one value
    coursekit implements (``None`` there also accepts False, 0 and empty values). A key in none of them (one
    a newer library added) passes only if it holds its ``defaults`` value, the library's own default;
    anything else raises a ValueError naming ``config.key``. Keys starting with "_" are bookkeeping.
    """
    required = required or {}
    for key, value in dict(config).items():
        if key.startswith("_") or key in mapped or key in inert:
            continue
        if key in required:
            want = required[key]
            if value != want and not (want is None and not value):
                raise ValueError(f"config.{key}={value!r} is not supported; {owner} implements {want!r} only")
        elif defaults is None or key not in defaults or value != defaults[key]:
            raise ValueError(f"config.{key}={value!r} is unknown to {owner}'s loader; refusing rather than "
                             "ignoring it")


def init_defaults(cls) -> dict:
    """The keyword defaults of ``cls.__init__`` (a diffusers class's config defaults)."""
    import inspect

    return {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}
