"""Training: the DDPM loop (Ho et al. 2020, Algorithm 1), and the trainer that makes the model zoo.

``train`` is the loop a lesson can run in seconds: a model, a schedule, a function that returns the
batch of a step; deterministic given ``seed``. ``fit`` trains a named recipe (``zoo.RECIPES``) on
``accelerate``: mixed precision, several processes or GPUs under ``accelerate launch``, EMA weights,
caption dropout for classifier-free guidance, gradient clipping, a warm-up + cosine learning rate,
a time budget, a loss log, and checkpoints it resumes from exactly.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ._checks import check_choice, check_float, check_int
from .diffusion.forward import prediction_type_of
from .diffusion.loss import diffusion_loss
from .diffusion.schedules import NoiseSchedule
from .machine import machine

Batches = Callable[[int], tuple[torch.Tensor, Any]]  # step -> (x0, cond)


DECAYED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)  # modules whose weights weight decay shrinks


def make_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.0) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter, ICLR 2019) over the trainable parameters: the fused kernel on CUDA,
    the multi-tensor ("foreach") one elsewhere (torch's CPU default updates one tensor at a time).
    ``weight_decay`` applies to the weights of linear and convolution layers only, never to biases, norms,
    embeddings or position embeddings (minGPT's ``configure_optimizers`` rule)."""
    check_float("lr", lr, 0.0)
    check_float("weight_decay", weight_decay, 0.0)
    decayed = {id(m.weight) for m in model.modules() if isinstance(m, DECAYED)}
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if id(p) in decayed], "weight_decay": weight_decay},
              {"params": [p for p in params if id(p) not in decayed], "weight_decay": 0.0}]
    if not weight_decay:  # one group, as checkpoints written before the split hold
        groups = [{"params": params, "weight_decay": 0.0}]
    kernel = {"fused": True} if params and params[0].is_cuda else {"foreach": True}
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, **kernel)


def optimize(loss: torch.Tensor, model: nn.Module, optimizer, grad_clip: float | None, accelerator=None) -> None:
    """One update: zero the gradients, backpropagate, clip the gradient norm, step (through ``accelerator``
    when given, which handles distributed gradients and loss scaling)."""
    optimizer.zero_grad(set_to_none=True)
    (accelerator.backward if accelerator else torch.Tensor.backward)(loss)
    if grad_clip:
        (accelerator.clip_grad_norm_ if accelerator else torch.nn.utils.clip_grad_norm_)(model.parameters(), grad_clip)
    optimizer.step()


def train(
    model: nn.Module,
    schedule: NoiseSchedule,
    batches: Batches,
    steps: int,
    *,
    lr: float = 1e-3,
    seed: int = 0,
    t_range: tuple[int, int] | None = None,
    grad_clip: float | None = 1.0,
    precision: str = "fp32",
    prediction_type: str | None = None,
    progress: bool = True,
    loss_fn: Callable[..., torch.Tensor] | None = None,
    lr_factor: Callable[[int], float] | None = None,
) -> list[float]:
    """Run ``steps`` steps of gradient descent on ``diffusion_loss``; returns the per-step losses.

    ``loss_fn(model, schedule, x0, cond, generator=)`` replaces ``diffusion_loss`` (then ``t_range`` and
    ``prediction_type`` must be None): ``unidiffuser_loss`` trains a two-modality network on pairs (x0, y0).
    ``lr_factor(step)`` scales ``lr`` at each step (e.g. ``warmup_cosine(0, steps)``); constant when None.

    ``precision="bf16"`` runs the forward pass under bf16 autocast (weights and optimizer stay fp32):
    on GPUs, and on CPUs with native bf16 (AVX512-BF16, AMX), about twice the throughput.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(batches):
        raise ValueError("batches must be a function step -> (x0, cond)")
    check_int("steps", steps, 1)
    check_choice("precision", precision, ("fp32", "bf16"))
    if loss_fn is not None:
        if not callable(loss_fn):
            raise ValueError("loss_fn must be callable (model, schedule, x0, cond, generator=), "
                             f"got {type(loss_fn).__name__}")
        if t_range is not None or prediction_type is not None:
            raise ValueError("t_range and prediction_type must be None with a loss_fn: they belong to diffusion_loss")
    else:
        prediction_type = prediction_type_of(model, prediction_type)
    device = next(model.parameters()).device.type
    if grad_clip is not None:
        check_float("grad_clip", grad_clip, 0.0)
    optimizer = make_optimizer(model, lr)
    if lr_factor is not None and not callable(lr_factor):
        raise ValueError(f"lr_factor must be callable step -> factor, got {type(lr_factor).__name__}")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor) if lr_factor is not None else None
    generator = torch.Generator().manual_seed(check_int("seed", seed, 0))
    model.train()
    losses = []
    for step in tqdm(range(steps), desc="train", disable=not progress):
        x0, cond = batches(step)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
            if loss_fn is not None:
                loss = loss_fn(model, schedule, x0, cond, generator=generator)
            else:
                loss = diffusion_loss(model, schedule, x0, cond, generator=generator, t_range=t_range,
                                      prediction_type=prediction_type)
        optimize(loss, model, optimizer, grad_clip)
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.item())
    model.eval()
    return losses


def fit_toy(name: str, schedule: NoiseSchedule, steps: int = 1000, batch: int = 512, seed: int = 0,
            lr: float = 3e-3, progress: bool = False) -> nn.Module:
    """A ``ToyMLP`` denoiser trained on the 2-D toy ``name`` (``data.toy2d``): fresh points every step, drawn
    from ``seed``; the weights are initialised from ``seed`` too, so the same call gives the same model."""
    from .data import toy2d
    from .models.toy import ToyMLP

    check_int("batch", batch, 1)
    data = torch.Generator().manual_seed(check_int("seed", seed, 0))
    check_choice("name", name, toy2d.TOYS)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ToyMLP()
    train(model, schedule, lambda step: (toy2d.sample(name, batch, generator=data), None), steps, lr=lr, seed=seed,
          progress=progress)
    return model


# --- the zoo trainer ---------------------------------------------------------------------------------


class EMA:
    """An exponential moving average of the weights, the ones a diffusion model samples with (Polyak &
    Juditsky 1992; DDPM, appendix B). The decay warms up as min(decay, (1 + n) / (10 + n)).

    The update is one multi-tensor ``lerp`` over every floating tensor (a few kernel launches, not one
    per tensor), against aliases of the model's tensors taken once."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = check_float("decay", decay, 0.0, 1.0)
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
        self.updates = 0
        self._live: tuple[nn.Module, list[torch.Tensor]] | None = None

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        if self._live is None or self._live[0] is not model:  # state_dict() tensors share the weights' storage
            state = model.state_dict()
            self._live = (model, [state[k] for k in self.shadow])
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(list(self.shadow.values()), self._live[1], 1 - d)

    def copy_to(self, model: nn.Module) -> None:
        state = model.state_dict()
        model.load_state_dict({k: self.shadow[k].to(v) if k in self.shadow else v for k, v in state.items()})

    def state_dict(self) -> dict:
        return {"shadow": self.shadow, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.shadow, self.updates = state["shadow"], state["updates"]


def warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up to 1, then a cosine decay to 0 at ``total`` (Loshchilov & Hutter,
    "SGDR", ICLR 2017)."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return factor


def make_batch(recipe, step: int, rank: int = 0, processes: int = 1,
               device: str | torch.device = "cpu") -> tuple[torch.Tensor, Any]:
    """The batch of a step for one process: fresh shapes-world scenes from a seed fixed by (recipe seed,
    step, process), so every run, resumed or not, sees the same data. Diffusion recipes get caption
    token ids (with attribute phrases left out at the recipe's ``attribute_dropout``); the classifier gets
    per-cell labels.

    Scenes are drawn, rendered and tokenized on ``device`` by a generator of that device, so a GPU
    trainer never waits for the CPU or copies a batch (the same seed gives other scenes on another
    kind of device: each device has its own random stream)."""
    from .data.shapes import ShapesWorld, omissions
    from .models.classifier import cell_targets
    from .models.text import Tokenizer, caption_ids

    if recipe.batch_size % processes:
        raise ValueError(f"batch_size {recipe.batch_size} must divide among {processes} processes")
    world = ShapesWorld(resolution=recipe.resolution, max_objects=recipe.max_objects)
    generator = torch.Generator(device).manual_seed((recipe.seed * 1_000_003 + step) * processes + rank)
    scenes = world.sample(recipe.batch_size // processes, generator=generator)
    images = world.render(scenes)[0]
    if recipe.kind == "classifier":
        return images, cell_targets(scenes)
    omit = omissions(scenes, recipe.attribute_dropout, generator) if recipe.attribute_dropout else None
    return images, caption_ids(Tokenizer(), scenes, omit)


def fit(recipe, out: str | Path, *, stop_after: int | None = None, max_seconds: float | None = None,
        resume: bool = True, progress: bool = True, init_folder: str | Path | None = None) -> dict:
    """Train ``recipe`` into folder ``out``, resuming from ``out/checkpoint`` if it exists.

    Stops after ``recipe.steps`` steps, or earlier after step ``stop_after`` or when the training time
    (summed over resumed runs) passes ``max_seconds`` (default: the recipe's). Writes
    ``out/<name>.safetensors`` (EMA weights, float16), ``out/<name>.train.json`` and ``out/loss.jsonl``.
    Runs unchanged under ``accelerate launch`` (on CPUs: ``accelerate launch --multi_gpu
    --num_processes N``, which starts N gloo processes when no GPU is present).
    A recipe with ``init`` starts from that zoo model's weights, read from ``init_folder`` (default: the shipped
    zoo); with ``experts``, each expert trains on the samples whose level falls in its interval (eDiff-I's
    fine-tuning: a step costs what one model's step costs).
    """
    from accelerate import Accelerator
    from torch.optim.lr_scheduler import LambdaLR

    from .diffusion.schedules import make_schedule
    from .models.classifier import classifier_loss
    from .models.text import Tokenizer
    from .zoo import CHECKPOINTS, build_model, initialise, save_weights

    out = Path(out)
    max_seconds = recipe.max_seconds if max_seconds is None else check_float("max_seconds", max_seconds, 0.0)
    cuda = torch.cuda.is_available()
    # precision is the recipe's, through torch.autocast: accelerate fixes its own mixed_precision once per
    # process, and ``zoo build`` trains recipes of different precisions one after another
    accelerator = Accelerator(cpu=not cuda)
    rank, processes = accelerator.process_index, accelerator.num_processes
    precision = recipe.mixed_precision

    torch.manual_seed(recipe.seed)  # the same initial weights on every process
    model = build_model(recipe)
    if recipe.init is not None:
        initialise(model, recipe, Path(init_folder) if init_folder is not None else CHECKPOINTS)
    model = model.to(accelerator.device)
    ema = EMA(model, recipe.ema_decay)
    optimizer = make_optimizer(model, recipe.lr, recipe.weight_decay)
    lr_schedule = LambdaLR(optimizer, warmup_cosine(recipe.warmup, recipe.steps))
    model, optimizer, lr_schedule = accelerator.prepare(model, optimizer, lr_schedule)
    schedule = make_schedule(recipe.schedule) if recipe.kind == "diffusion" else None
    device = accelerator.device  # t, noise and caption dropout are drawn there: nothing is copied per step
    generator = torch.Generator(device).manual_seed(recipe.seed * 7919 + rank)
    empty = Tokenizer()([""]).to(device)

    step, elapsed = 0, 0.0
    checkpoint = out / "checkpoint"
    if resume and (checkpoint / "trainer.json").exists():
        accelerator.load_state(str(checkpoint))
        saved = json.loads((checkpoint / "trainer.json").read_text())
        step, elapsed = saved["step"], saved["elapsed"]
        ema.load_state_dict(torch.load(checkpoint / "ema.pt", weights_only=True))
        generator.set_state(torch.load(checkpoint / f"generator_{rank}.pt", weights_only=True))

    def save_checkpoint() -> None:
        accelerator.wait_for_everyone()
        accelerator.save_state(str(checkpoint))
        torch.save(generator.get_state(), checkpoint / f"generator_{rank}.pt")
        if accelerator.is_main_process:
            torch.save(ema.state_dict(), checkpoint / "ema.pt")
            (checkpoint / "trainer.json").write_text(json.dumps({"step": step, "elapsed": elapsed}))
        accelerator.wait_for_everyone()

    out.mkdir(parents=True, exist_ok=True)
    last = min(recipe.steps, stop_after) if stop_after is not None else recipe.steps
    bar = tqdm(total=last, initial=step, desc=recipe.name, disable=not (progress and accelerator.is_main_process))
    log = open(out / "loss.jsonl", "a") if accelerator.is_main_process else None
    model.train()
    start = time.perf_counter() - elapsed
    while step < last:
        x0, target = make_batch(recipe, step, rank, processes, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            if recipe.kind == "classifier":
                loss = classifier_loss(model(x0), target)
            else:  # caption dropout: some captions become the empty caption, the unconditional input
                drop = torch.rand(len(target), generator=generator, device=device) < recipe.caption_dropout
                ids = torch.where(drop[:, None], empty, target)
                loss = diffusion_loss(model, schedule, x0, ids, generator=generator,
                                      prediction_type=recipe.prediction_type)
        optimize(loss, model, optimizer, recipe.grad_clip, accelerator)
        lr_schedule.step()
        ema.update(accelerator.unwrap_model(model))
        step += 1
        bar.update(1)
        if step % 10 and step != last:  # read the loss and the clock every 10 steps: each read waits for the GPU
            continue
        elapsed = time.perf_counter() - start
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if log is not None:
            log.write(json.dumps({"step": step, "loss": round(loss.item(), 6), "lr": lr_schedule.get_last_lr()[0],
                                  "seconds": round(elapsed, 2)}) + "\n")
            log.flush()
        over = torch.tensor([float(max_seconds is not None and elapsed > max_seconds)], device=device)
        if accelerator.reduce(over, "max").item() > 0:  # every process stops at the same step
            break
        if step % recipe.save_every == 0:
            save_checkpoint()
    bar.close()
    if log is not None:
        log.close()
    elapsed = time.perf_counter() - start
    save_checkpoint()

    summary = {"name": recipe.name, "steps": step, "wall_seconds": round(elapsed, 1), "processes": processes,
               "precision": precision, "hardware": machine(), "finished": step >= recipe.steps}
    if accelerator.is_main_process:
        final = build_model(recipe)
        ema.copy_to(final)
        summary["parameters"] = sum(p.numel() for p in final.parameters())
        summary["sha256"] = save_weights(final, out / f"{recipe.name}.safetensors")
        (out / f"{recipe.name}.train.json").write_text(json.dumps(summary, indent=2))
    accelerator.wait_for_everyone()
    return summary
