"""Benchmarks (``coursekit bench``): measured throughput, reported with the machine that gave it.

Performance claims in the course come from here, not from timed tests. The model benchmarks run
coursekit's network and the diffusers network of the same architecture, with the same weights, in
the same process, alternating rounds so that both see the same machine state; each row gives both
numbers, their ratio and the achieved TFLOP/s (FLOPs counted with ``counting.flop_counter``).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import statistics
import time
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ._checks import check_choice, check_float, check_int
from .data.shapes import ShapesWorld

# Dense bf16 tensor-core peaks in TFLOP/s (vendor data sheets), for model FLOPs utilisation.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 70.0,
                    "T4": 65.0}


def bench_shapes(resolution: int = 32, batch: int = 1024, seconds: float = 3.0, max_objects: int = 2) -> dict:
    """Images per second of the shapes world (sampling scenes and rendering images + masks) on CPU."""
    check_int("batch", batch, 1)
    check_float("seconds", seconds, 0.01)
    world = ShapesWorld(resolution=resolution, max_objects=max_objects)
    world.render(world.sample(batch, seed=0))  # warm-up
    n, seed, start = 0, 1, time.perf_counter()
    while time.perf_counter() - start < seconds:
        world.render(world.sample(batch, seed=seed))
        n, seed = n + batch, seed + 1
    elapsed = time.perf_counter() - start
    return {"benchmark": "shapes", "resolution": resolution, "batch": batch, "max_objects": max_objects,
            "images": n, "seconds": round(elapsed, 3), "images_per_s": round(n / elapsed, 1)}


def seconds_per_call(fn, n: int, cuda: bool) -> float:
    """Wall seconds per call of ``fn`` over ``n`` calls, waiting for the GPU before and after."""
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / n


# --- coursekit networks against their diffusers twins ---------------------------------------------


@dataclass(frozen=True)
class Case:
    """One architecture: how to build both networks and a batch of inputs."""

    name: str
    gpu_batch: int
    cpu_batch: int

    def build(self):
        """(coursekit model, diffusers model with the same weights, sample shape, make_cond)."""
        from .models import dit, unet

        if self.name == "dit-s2":
            cfg = dit.dit_s2(input_size=32, freq_shift=1.0, mlp_norm_eps=1e-5)
            ref = dit.diffusers_dit(cfg)
            return dit.from_diffusers(ref), ref, (4, 32, 32), lambda B: torch.randint(0, 1000, (B,))
        cfg = unet.unet_ddpm_cifar10(dropout=0.0) if self.name == "unet-cifar10" else unet.unet_shapes()
        ref = unet.diffusers_unet(cfg)
        cond = (lambda B: None) if cfg.context_dim is None else (lambda B: torch.randn(B, 16, cfg.context_dim))
        return unet.from_diffusers(ref), ref, (3, 32, 32), cond


CASES = {c.name: c for c in (Case("unet-cifar10", 128, 8), Case("unet-shapes", 256, 32), Case("dit-s2", 256, 8))}


def _call(model, x, t, cond):
    """Both libraries' networks behind one signature."""
    if type(model).__module__.startswith("coursekit"):
        return model(x, t, cond)
    if cond is None:
        return model(x, t).sample
    if cond.is_floating_point():
        return model(x, t, encoder_hidden_states=cond).sample
    return model(x, t, class_labels=cond).sample


def bench_model(name: str, device: str | None = None, batch: int | None = None, steps: int = 3, rounds: int = 3,
                sample_steps: int = 50, sample_batch: int | None = None, precision: str | None = None,
                compile: bool = False) -> dict:
    """Training-step throughput and ``sample_steps``-step DDIM sampling time, coursekit vs diffusers.

    Both sides get the same precision (bf16 autocast by default on CUDA, fp32 on CPU). coursekit
    adds what measurably pays on the device: channels-last U-Nets and the fused AdamW on CUDA
    (``train.make_optimizer``), torch.compile on request. diffusers runs as its training scripts
    do: eager, torch's default AdamW.
    """
    from .diffusion import DDIMSampler, linear, q_sample, sample
    from .models.counting import flop_counter
    from .train import make_optimizer

    check_choice("name", name, CASES)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.startswith("cuda")
    case = CASES[name]
    batch = check_int("batch", batch or (case.gpu_batch if cuda else case.cpu_batch), 1)
    sample_batch = check_int("sample_batch", sample_batch or batch, 1)
    precision = check_choice("precision", precision or ("bf16" if cuda else "fp32"), ("fp32", "bf16"))
    check_int("steps", steps, 1)
    check_int("rounds", rounds, 1)
    check_int("sample_steps", sample_steps, 1)

    torch.manual_seed(0)
    ours, ref, shape, make_cond = case.build()
    channels_last = cuda and name.startswith("unet")
    ours, ref = ours.to(device), ref.to(device)
    if channels_last:
        ours = ours.to(memory_format=torch.channels_last)
    schedule = linear()
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(batch, *shape, generator=gen).to(device)
    noise = torch.randn(batch, *shape, generator=gen).to(device)
    t = torch.randint(0, 1000, (batch,), generator=gen).to(device)
    cond = make_cond(batch)
    cond = cond.to(device) if cond is not None else None
    x_t = q_sample(x0, t, noise, schedule)
    autocast = (lambda: torch.autocast(device.split(":")[0], dtype=torch.bfloat16)) if precision == "bf16" else (
        contextlib.nullcontext)

    def train_step(model, optimizer):
        def step():
            with autocast():
                loss = F.mse_loss(_call(model, x_t, t, cond).float(), noise)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return step

    optimizer = make_optimizer(ours, 1e-4)
    with flop_counter() as counter:  # counted on the eager network (the counter cannot see compiled kernels)
        train_step(ours, optimizer)()
    train_flops = counter.get_total_flops()
    sides = {
        "coursekit": (torch.compile(ours) if compile else ours, optimizer),
        "diffusers": (ref, torch.optim.AdamW(ref.parameters(), lr=1e-4)),
    }
    steps_fn = {k: train_step(m, opt) for k, (m, opt) in sides.items()}
    for fn in steps_fn.values():  # warm-up (and, with compile, compilation)
        fn()

    per_round = {k: [] for k in sides}
    for _ in range(rounds):  # alternate, so drifts in clock or load hit both sides alike
        for k in sides:
            per_round[k].append(seconds_per_call(steps_fn[k], steps, cuda))
    train_s = {k: statistics.median(v) for k, v in per_round.items()}

    # sampling: the coursekit loop with coursekit's network; diffusers' DDIMScheduler with its own
    from diffusers import DDIMScheduler

    xs = torch.randn(sample_batch, *shape, generator=gen).to(device)
    cs = make_cond(sample_batch)
    cs = cs.to(device) if cs is not None else None
    sampler = DDIMSampler(sample_steps)
    scheduler = DDIMScheduler(clip_sample=False)
    scheduler.set_timesteps(sample_steps)

    def sample_ours():
        model = sides["coursekit"][0].eval()
        with autocast():
            sample(lambda x, tt, c: _call(model, x, tt, c), schedule, xs, sampler, cond=cs, progress=False)

    @torch.no_grad()
    def sample_ref():
        x = xs
        for tt in scheduler.timesteps:
            with autocast():
                eps = _call(ref.eval(), x, tt.expand(len(x)).to(device), cs)
            x = scheduler.step(eps.float(), tt, x).prev_sample

    with torch.no_grad(), flop_counter() as counter:
        with autocast():
            _call(ours.eval(), xs, t[:1].expand(sample_batch), cs)
    sample_flops = counter.get_total_flops() * sample_steps
    sample_s = {"coursekit": seconds_per_call(sample_ours, 1, cuda), "diffusers": seconds_per_call(sample_ref, 1, cuda)}

    peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if cuda and k in torch.cuda.get_device_name(0)), None)
    row = {"benchmark": name, "device": torch.cuda.get_device_name(0) if cuda else "cpu", "precision": precision,
           "batch": batch, "sample_batch": sample_batch, "sample_steps": sample_steps,
           "coursekit_settings": {"channels_last": channels_last, "fused_adamw": cuda, "compile": compile}}
    for k in sides:
        row[k] = {
            "train_images_per_s": round(batch / train_s[k], 2),
            "train_tflops": round(train_flops / train_s[k] / 1e12, 3),
            "sample_seconds": round(sample_s[k], 3),
            "sample_tflops": round(sample_flops / sample_s[k] / 1e12, 3),
        }
        if peak and precision == "bf16":
            row[k]["train_mfu"] = round(row[k]["train_tflops"] / peak, 3)
    row["train_ratio"] = round(train_s["diffusers"] / train_s["coursekit"], 3)
    row["sample_ratio"] = round(sample_s["diffusers"] / sample_s["coursekit"], 3)
    return row


# --- the zoo trainer against the bare network step ---------------------------------------------------


def bench_trainer(recipe: str = "shapes-unet", batch: int | None = None, steps: int | None = None, rounds: int = 2) -> dict:
    """Images/s of the real zoo trainer (``train.fit``: batch rendering, caption dropout, the v-loss,
    grad clipping, learning-rate schedule, EMA, logging) against the bare network step on the same
    model and batch size, in the same run: zero_grad, forward, loss, backward, AdamW, nothing else.

    The ratio trainer / bare is the share of the accelerator's time the trainer keeps the network busy. On
    CUDA the row also counts the trainer's host synchronisations per step (torch's sync debug mode), over
    the whole run including its start.
    The trainer runs ``steps`` steps after 10 warm-up steps, timed from its loss log; the bare step is
    timed in ``rounds`` rounds around it and the faster round counts (the conservative ratio). Runs on
    CUDA when present (like ``fit``), in the recipe's precision.
    """
    import json
    import tempfile
    from pathlib import Path

    from .diffusion.forward import q_sample, v_from_x0_eps
    from .diffusion.schedules import make_schedule
    from .train import fit, make_batch, make_optimizer
    from .zoo import build_model, recipe as get_recipe

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    r = get_recipe(recipe)
    if r.kind != "diffusion":
        raise ValueError(f"recipe must be a text-to-image recipe, got {recipe!r}")
    batch = check_int("batch", batch or (r.batch_size if cuda else 32), 1)
    steps = check_int("steps", steps or (200 if cuda else 10), 10)
    if steps % 10:
        raise ValueError(f"steps must be a multiple of 10 (the trainer logs every 10 steps), got {steps}")
    check_int("rounds", rounds, 1)
    warm = 10
    r = r.replace(batch_size=batch, steps=warm + steps, save_every=10 * (warm + steps), max_seconds=None)

    torch.manual_seed(r.seed)
    model = build_model(r).to(device)
    optimizer = make_optimizer(model, r.lr)
    schedule = make_schedule(r.schedule)
    x0, ids = make_batch(r, 0, device=device)
    g = torch.Generator(device).manual_seed(0)
    t = torch.randint(0, schedule.T, (batch,), generator=g, device=device)
    noise = torch.randn(x0.shape, generator=g, device=device)
    x_t, v = q_sample(x0, t, noise, schedule), v_from_x0_eps(x0, noise, schedule.abar(t, x0))

    def bare_step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=r.mixed_precision == "bf16"):
            loss = F.mse_loss(model(x_t, t, ids).float(), v)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def timed_bare() -> float:
        for _ in range(3):  # warm-up
            bare_step()
        return batch / seconds_per_call(bare_step, steps, cuda)

    bare = [timed_bare()]
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings(record=True) as caught:
        if cuda:  # count the trainer's host synchronisations (by design: one per 10 steps, to log the loss)
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
        try:
            fit(r, folder, resume=False, progress=False)
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
        log = {e["step"]: e["seconds"] for e in map(json.loads, (Path(folder) / "loss.jsonl").read_text().splitlines())}
    syncs = sum("synchroniz" in str(w.message) for w in caught) if cuda else None
    trainer = batch * steps / (log[warm + steps] - log[warm])
    bare += [timed_bare() for _ in range(rounds - 1)]
    return {"benchmark": f"trainer-{r.architecture}", "recipe": recipe, "device": torch.cuda.get_device_name(0) if cuda
            else "cpu", "precision": r.mixed_precision, "batch": batch, "steps": steps,
            "trainer_images_per_s": round(trainer, 2), "bare_step_images_per_s": round(max(bare), 2),
            "bare_rounds_images_per_s": [round(b, 2) for b in bare], "ratio": round(trainer / max(bare), 3),
            "host_syncs_per_step": None if syncs is None else round(syncs / (warm + steps), 2)}


# --- spatially sparse inference for edits (SIGE) against the dense network -------------------------------------


# SIGE's reported figures for Stable Diffusion (Li et al., journal version, arXiv 2211.02048, abstract): about 1% of
# the image edited, one U-Net forward at 512x512 (64x64 latents)
SIGE_PAPER_SD = {"edited_area": "about 1%", "mac_reduction": 8.2, "speedup": 7.2, "device": "NVIDIA RTX 3090",
                 "source": "Li et al., Efficient Spatially Sparse Inference for Conditional GANs and Diffusion Models, "
                           "arXiv 2211.02048, abstract"}
SPARSE_MODELS = ("shapes", "sd15")


def bench_sparse(device: str | None = None, resolution: int = 256, areas: tuple[float, ...] = (0.01, 0.05, 0.2),
                 rounds: int = 2, block: int = 8, model: str = "shapes") -> dict:
    """One U-Net forward on an edited input: dense (coursekit, and diffusers' twin with the same weights) against
    ``models.sparse`` from the original's cache, with frozen and with fresh GroupNorm statistics, for a square
    edit covering each of ``areas`` of the input. ``model``: "shapes", the course's U-Net architecture
    (``unet_shapes``) on ``resolution`` x ``resolution`` images; "sd15", Stable Diffusion 1.5's U-Net (``unet_sd15``)
    on latents of side ``resolution`` (64: a 512x512 image) with 77 text tokens; ``sparse-sd`` runs it with tiles
    of at most 4 (``block``), which the measured 1% edit needed: tiles of 8 straddled by the edit made the 32x32 and
    16x16 levels, where most of SD's MACs are, 25% active (5.0x fewer MACs, 2.6x faster; tiles of 4: 8.0x, 3.2x,
    on a 2-core CPU, with oneDNN's convolutions throughout). Dense is timed twice: as is (coursekit and diffusers),
    and with the sparse pass's kernel rule (``products_on_small_maps``: on the CPU, wide layers on few pixels as one
    matrix product), each speed-up reported against both. Random weights (the cost does not depend on them; the
    agreement with the dense output is that of a random network). MACs counted (``counting.count_macs``),
    wall-clock timed in alternating rounds, and each sparse output's PSNR against the dense output on the edited
    input (peak: the dense output's range)."""
    from .evaluate import psnr as image_psnr
    from .models import unet
    from .models.counting import count_macs
    from .models.sparse import SparseUNet, difference_mask, products_on_small_maps

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.startswith("cuda")
    check_choice("model", model, SPARSE_MODELS)
    check_int("resolution", resolution, 32)
    check_int("rounds", rounds, 1)
    for a in areas:
        check_float("areas", a, 1e-4, 1.0)
    torch.manual_seed(0)
    cfg, tokens = (unet.unet_shapes(), 16) if model == "shapes" else (unet.unet_sd15(), 77)
    ref = unet.diffusers_unet(cfg).eval()
    ours = unet.from_diffusers(ref, copy=False).eval().to(device)  # the same tensors: one copy of SD's weights
    ref = ref.to(device)
    engine = SparseUNet(ours, block)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, cfg.in_channels, resolution, resolution, generator=gen).to(device)
    cond = torch.randn(1, tokens, cfg.context_dim, generator=gen).to(device)
    t = torch.tensor([500], device=device)
    with torch.no_grad():
        _, cache = engine.record(x, t, cond)
    edits = {}
    for area in areas:  # a square, centred, off the tile grid
        side = max(1, round(resolution * area**0.5))
        y0 = (resolution - side) // 2
        edited = x.clone()
        edited[..., y0:y0 + side, y0:y0 + side] += 0.5
        mask = difference_mask(x, edited)
        edits[area] = (edited, engine.tiles(mask), mask.float().mean().item())

    def sparse(area, norms):
        edited, tiles, _ = edits[area]
        return lambda: engine.sparse(edited, t, cond, cache, tiles, norms)

    def dense_with_products():
        with products_on_small_maps(ours):
            return _call(ours, edits[areas[0]][0], t, cond)

    calls = {"diffusers": lambda: _call(ref, edits[areas[0]][0], t, cond),
             "coursekit": lambda: _call(ours, edits[areas[0]][0], t, cond), "coursekit_products": dense_with_products}
    calls.update({(a, n): sparse(a, n) for a in areas for n in ("frozen", "fresh")})
    with torch.no_grad():
        for fn in calls.values():  # warm-up
            fn()
        times = {k: [] for k in calls}
        for _ in range(rounds):
            for k, fn in calls.items():
                times[k].append(seconds_per_call(fn, 1, cuda))
    seconds = {k: statistics.median(v) for k, v in times.items()}
    dense_macs = count_macs(ours, edits[areas[0]][0], t, cond)
    rows = []
    for area in areas:
        edited, tiles, changed = edits[area]
        macs = count_macs(lambda: sparse(area, "frozen")())
        with torch.no_grad():
            dense = ours(edited, t, cond).float()
            peak = (dense.max() - dense.min()).item()  # network outputs have no fixed range
            psnr = {n: round(image_psnr(sparse(area, n)().float(), dense, peak).item(), 1) for n in ("frozen", "fresh")}
        rows.append({"area": area, "mask_fraction": round(changed, 4),
                     "active_tiles": {str(h): round(T.fraction, 4) for h, T in tiles.items()},
                     "gmacs": round(macs / 1e9, 3), "mac_reduction": round(dense_macs / macs, 2),
                     **{f"{n}_seconds": round(seconds[(area, n)], 4) for n in ("frozen", "fresh")},
                     **{f"{n}_speedup": round(seconds["coursekit"] / seconds[(area, n)], 2) for n in ("frozen", "fresh")},
                     **{f"{n}_speedup_same_kernels": round(seconds["coursekit_products"] / seconds[(area, n)], 2)
                        for n in ("frozen", "fresh")},
                     **{f"{n}_psnr_to_dense": psnr[n] for n in ("frozen", "fresh")}})
    return {"benchmark": "sparse" if model == "shapes" else "sparse-sd", "model": model, "weights": "random",
            "device": torch.cuda.get_device_name(0) if cuda else "cpu", "resolution": resolution, "block": block,
            "rounds": rounds, "dense_gmacs": round(dense_macs / 1e9, 3),
            "dense_seconds": {k: round(seconds[k], 4) for k in ("coursekit", "diffusers", "coursekit_products")},
            "diffusers_over_coursekit": round(seconds["diffusers"] / seconds["coursekit"], 3), "rows": rows,
            **({"paper": SIGE_PAPER_SD} if model == "sd15" else {})}


BENCHMARKS = {"shapes": bench_shapes, "trainer-unet": bench_trainer,
              "trainer-dit": functools.partial(bench_trainer, "shapes-dit"),
              "trainer-uvit": functools.partial(bench_trainer, "shapes-uvit"), "sparse": bench_sparse,
              "sparse-sd": functools.partial(bench_sparse, model="sd15", resolution=64, block=4),
              **{name: functools.partial(bench_model, name) for name in CASES}}


def run(name: str, **options) -> dict:
    """Run benchmark ``name`` with those of ``options`` its function takes; None leaves its default."""
    check_choice("name", name, list(BENCHMARKS))
    fn = BENCHMARKS[name]
    takes = inspect.signature(fn).parameters
    return fn(**{k: v for k, v in options.items() if k in takes and v is not None})
