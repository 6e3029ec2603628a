"""How big is a network: parameters, multiply-accumulates per forward pass, activation shapes.

MACs are counted with torch's ``FlopCounterMode`` (which counts 2 FLOPs per multiply-accumulate)
and halved, the convention of fvcore, with which the DiT paper counts its "Gflops" (Peebles & Xie
2022, Table 4). Matrix products, convolutions and attention count; norms and activations do not.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count


def _cpu_sdpa(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_sdpa_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


# torch counts the CUDA attention kernels but not the CPU one; add it so CPU counts are complete.
_EXTRA = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward,
}


def flop_counter() -> FlopCounterMode:
    """A ``FlopCounterMode`` that also counts CPU attention; use ``with flop_counter() as fc: ...``."""
    return FlopCounterMode(display=False, custom_mapping=_EXTRA)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (of those that require gradients, with ``trainable_only``)."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(fn: Callable, *inputs) -> int:
    """Multiply-accumulates of one call ``fn(*inputs)`` (a model's forward, or a whole training step)."""
    if not callable(fn):
        raise ValueError(f"fn must be callable, got {type(fn).__name__}")
    with flop_counter() as counter, torch.no_grad() if isinstance(fn, nn.Module) else torch.enable_grad():
        fn(*inputs)
    return counter.get_total_flops() // 2


def macs_by_kind(fn: Callable, *inputs) -> dict[str, int]:
    """Multiply-accumulates of one call ``fn(*inputs)`` by kind of work: ``convolution`` (every convolution),
    ``projection`` (every other matrix product: linear layers, i.e. attention's query/key/value and output
    projections, feed-forward layers, time and text embeddings) and ``attention`` (the attention matrix itself,
    softmax(Q K^T) V). The kinds sum to ``count_macs``."""
    if not callable(fn):
        raise ValueError(f"fn must be callable, got {type(fn).__name__}")
    with flop_counter() as counter, torch.no_grad():
        fn(*inputs)
    out = {"convolution": 0, "projection": 0, "attention": 0}
    for op, flops in counter.get_flop_counts().get("Global", {}).items():
        name = str(op)
        kind = ("convolution" if "convolution" in name else "attention" if "scaled_dot_product" in name
                else "projection")
        out[kind] += flops // 2
    return out


def activation_shapes(model: nn.Module, inputs: tuple, types: tuple[type, ...]) -> list[tuple[str, tuple[int, ...]]]:
    """(module name, output shape) for every submodule of the given ``types``, in the order they run."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    seen, hooks = [], []
    for name, module in model.named_modules():
        if isinstance(module, types):
            hooks.append(module.register_forward_hook(
                lambda m, args, out, name=name: seen.append((name, tuple(out.shape)))))
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return seen


def macs_by_module(model: nn.Module, *inputs) -> dict[str, int]:
    """MACs of one forward pass per submodule, by qualified name ("down.0", "down.0.res.1.conv1", ...).

    A container that is never called itself (a ``ModuleList``, a level holding blocks) counts the
    sum of its children.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    with flop_counter() as counter, torch.no_grad():
        model(*inputs)
    root = type(model).__name__
    called = {name[len(root) + 1:]: sum(ops.values()) // 2 for name, ops in counter.get_flop_counts().items()
              if name.startswith(root + ".")}
    out: dict[str, int] = {}

    def visit(prefix: str, module: nn.Module) -> int:
        total = 0
        for child_name, child in module.named_children():
            total += visit(f"{prefix}.{child_name}" if prefix else child_name, child)
        if prefix:
            out[prefix] = called.get(prefix, total)
        return out.get(prefix, total)

    visit("", model)
    return out
