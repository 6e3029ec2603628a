"""The zoo build (``coursekit zoo build``): train, evaluate and card the course's models, optionally
inside one wall-clock budget.

With ``minutes`` the build fits one GPU call. It first measures, in short throw-away runs, each
recipe's training speed alone and (unless told) all recipes' speeds side by side, and the cost of each
evaluation. Side by side wins when the recipes together get more steps than one after another (a
small model leaves most of a large GPU idle). It then sets each recipe's ``steps`` so that its
warm-up + cosine learning-rate schedule ends inside the time left, trains (each run a ``coursekit
train`` process), evaluates on the GPU, and writes the step count into the card's recipe, so that
``coursekit train CARD.json`` reproduces the model. Without ``minutes`` each recipe trains as the
registry defines it, in this process, resuming from ``runs/<name>``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from ._checks import check_float, check_int
from .zoo import CHECKPOINTS, RECIPES, Recipe, card, code_version, names as card_names, recipe, write_card

TEXT_TO_IMAGE = ("shapes-unet", "shapes-dit", "shapes-uvit")
JUDGE = "shapes-classifier"


def _init_folder(r: Recipe, folder: Path) -> Path:
    """Where recipe ``r``'s init model is read from: the build's folder if it holds that model, else the shipped
    zoo."""
    return folder if r.init is not None and (folder / f"{r.init}.json").exists() else CHECKPOINTS


def _train_processes(recipes: list[Recipe], runs: list[Path], together: bool, folder: Path) -> list[float]:
    """Train each recipe in a ``coursekit train`` process, all at once or one after another; returns
    each process's wall seconds. A failed process raises with the end of its error output."""
    def launch(r: Recipe, run: Path) -> subprocess.Popen:
        run.mkdir(parents=True, exist_ok=True)
        (run / "recipe.json").write_text(json.dumps(asdict(r), indent=2))
        cmd = [sys.executable, "-m", "coursekit.cli", "train", str(run / "recipe.json"), "--out", str(run), "--quiet",
               "--init-folder", str(_init_folder(r, folder))]
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait(r: Recipe, process: subprocess.Popen, since: float) -> float:
        _, err = process.communicate()
        if process.returncode:
            raise RuntimeError(f"training {r.name} failed:\n{err[-2000:]}")
        return time.perf_counter() - since

    if together:
        start = time.perf_counter()
        processes = [launch(r, run) for r, run in zip(recipes, runs)]
        return [wait(r, p, start) for r, p in zip(recipes, processes)]
    return [wait(r, launch(r, run), time.perf_counter()) for r, run in zip(recipes, runs)]


def _probe(recipes: list[Recipe], runs: Path, steps: int, together: bool,
           folder: Path) -> dict[str, tuple[float, float]]:
    """{name: (steps per second, fixed seconds)} of each recipe's training here, from throw-away runs
    of ``steps`` steps: the rate is timed between step 10 and ``steps`` (the first steps hold the
    start-up: allocation, autotuning); the fixed cost is the rest of the process's wall time (start,
    building the model, the first steps, writing checkpoints and weights)."""
    probes = [r.replace(steps=steps, save_every=10 * steps, max_seconds=None) for r in recipes]
    folders = [runs / f"{r.name}.probe" for r in recipes]
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    walls = _train_processes(probes, folders, together, folder)
    out = {}
    for r, folder, wall in zip(recipes, folders, walls):
        log = {e["step"]: e["seconds"] for e in map(json.loads, (folder / "loss.jsonl").read_text().splitlines())}
        rate = (steps - 10) / (log[steps] - log[10])
        out[r.name] = (rate, max(0.0, wall - steps / rate))
        shutil.rmtree(folder)
    return out


def _eval_seconds(r: Recipe, n: int, steps: int, guidances, device: str) -> float:
    """What ``evaluate`` will cost for recipe ``r``: one timed chunk of generation at ``steps`` steps,
    judged (the speed does not depend on the weights, so fresh models serve), times every chunk and
    guidance, plus the diversity chunk."""
    from .evaluate import CHUNK
    from .zoo import build_model, pipeline_of

    pipe = pipeline_of(r, build_model(r).to(device).eval())
    judge = build_model(recipe(JUDGE)).to(device).eval()
    captions = [""] * CHUNK
    pipe.generate(captions, guidance_scale=3.0, num_inference_steps=1)  # warm-up
    start = time.perf_counter()
    with torch.no_grad():
        judge.predict(pipe.generate(captions, guidance_scale=3.0, num_inference_steps=steps).clamp(-1, 1))
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * len(guidances) * (n // CHUNK + 1)


def _check_folder(folder: Path, names: list[str], force: bool, runs: Path | None) -> None:
    """Refuse a folder whose cards another code version wrote, or a model or run that would be
    overwritten, unless ``force``."""
    if force:
        return
    here = card_names(folder) if folder.exists() else []
    other = sorted({str(card(n, folder).get("code_version")) for n in here} - {code_version()})
    if other:
        raise ValueError(f"folder {str(folder)!r} holds cards of another code version ({', '.join(other)}; "
                         f"this is {code_version()}): build into a new folder, or pass force (--force)")
    taken = [n for n in names if n in here]
    if taken:
        raise ValueError(f"folder {str(folder)!r} already holds {taken}: pass force (--force) to overwrite them")
    if runs is not None:
        started = [n for n in names if (runs / n).exists()]
        if started:
            raise ValueError(f"runs {str(runs)!r} already holds runs of {started}: a budgeted build starts them "
                             "afresh; pass force (--force) to delete them, or give another --runs")


def plan_budget(recipes: list[Recipe], seconds: float, alone: dict | None, together: dict | None) -> dict:
    """Each recipe's steps for ``seconds`` of training, from probes {name: (steps/s, fixed s)}: one after
    another (``alone``), recipe i gets an equal share s and trains rate_i (s - fixed_i) steps; side by
    side (``together``), all get the whole window at their shared rates. With both probes, side by side
    is chosen when it gives the recipes more steps on average (gain > 1)."""
    if alone is None and together is None:
        raise ValueError("alone and together cannot both be None: give at least one probe")
    share = seconds / len(recipes)
    one = alone and {r.name: int(alone[r.name][0] * (share - alone[r.name][1])) for r in recipes}
    side = together and {r.name: int(together[r.name][0] * (seconds - together[r.name][1])) for r in recipes}
    gain = None
    if one and side:
        gain = round(sum(side[n] / max(one[n], 1) for n in one) / len(one), 2)
    if not one or (gain is not None and gain > 1):
        return {"mode": "side by side", "side_by_side_gain": gain, "steps": side}
    return {"mode": "one after another", "side_by_side_gain": gain, "steps": one}


def build(folder: str | Path, names: list[str] | None = None, *, minutes: float | None = None,
          side_by_side: bool | None = None, overrides: dict | None = None, eval_n: int | None = None,
          eval_steps: int = 25, notes: str = "", runs: str | Path | None = None, force: bool = False,
          probe_steps: int = 50, guidances=(1.0, 3.0)) -> list[dict]:
    """Train, evaluate and write card after card into ``folder``; returns the cards.

    ``names``: recipes to build (default: the classifier and the three text-to-image models; with
    ``minutes``, the three text-to-image models). Text-to-image models are judged by the folder's
    ``shapes-classifier``; when the build does not train one, the shipped one is copied in.
    ``minutes``: the wall-clock budget of the whole build (probes, training, evaluation); each recipe's
    ``steps`` is sized from its probe (``probe_steps`` steps, timed after the first 10). ``side_by_side``: train the recipes at once (True) or one after
    another (False); None measures both and takes the faster. ``overrides``: recipe fields to change for
    every text-to-image recipe (e.g. ``{"batch_size": 64}``). Runs go to ``runs/<name>`` (default
    ``folder/runs``). Nothing in ``folder`` or ``runs`` is overwritten without ``force``. Evaluation
    runs on the GPU when there is one.
    """
    from .train import fit

    start = time.perf_counter()
    folder = Path(folder)
    names = list(names or (TEXT_TO_IMAGE if minutes is not None else (JUDGE, *TEXT_TO_IMAGE)))
    for name in names:
        if name not in RECIPES:
            raise ValueError(f"names must be recipes of {sorted(RECIPES)}, got {name!r}")
    if minutes is not None and (check_float("minutes", minutes) <= 0):
        raise ValueError(f"minutes must be > 0, got {minutes}")
    chained = [n for n in names if RECIPES[n].init in names]
    if minutes is not None and chained:
        raise ValueError(f"names: {chained[0]} starts from {RECIPES[chained[0]].init}, which this budgeted build also "
                         f"trains; build {RECIPES[chained[0]].init} first, then {chained[0]} in a second build")
    if side_by_side not in (None, True, False):
        raise ValueError(f"side_by_side must be None, True or False, got {side_by_side!r}")
    check_int("probe_steps", probe_steps, 20)
    if probe_steps % 10:
        raise ValueError(f"probe_steps must be a multiple of 10 (the trainer logs every 10 steps), got {probe_steps}")
    runs = Path(runs) if runs is not None else folder / "runs"
    _check_folder(folder, names, force, runs if minutes is not None else None)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    recipes = []
    for name in sorted(names, key=lambda n: (RECIPES[n].kind != "classifier", RECIPES[n].init in names)):  # the judge
        # first; a recipe that starts from another of this build's models after it
        r = recipe(name)
        recipes.append(r.replace(**overrides) if overrides and r.kind == "diffusion" else r)
    folder.mkdir(parents=True, exist_ok=True)
    if any(r.kind == "diffusion" for r in recipes) and JUDGE not in names and JUDGE not in card_names(folder):
        for suffix in (".json", ".safetensors"):  # the shipped judge scores this build's models
            shutil.copyfile(CHECKPOINTS / f"{JUDGE}{suffix}", folder / f"{JUDGE}{suffix}")

    if minutes is None:  # the registry's recipes, in this process, resuming where a run stopped
        cards = []
        for r in recipes:
            fit(r, runs / r.name, init_folder=_init_folder(r, folder))
            cards.append(_card(r, runs / r.name, folder, notes, eval_n, eval_steps, guidances, device))
        return cards

    if force:
        for r in recipes:
            shutil.rmtree(runs / r.name, ignore_errors=True)
    alone = _probe(recipes, runs, probe_steps, False, folder) if side_by_side is not True else None
    measure_both = side_by_side is None and len(recipes) > 1
    together = _probe(recipes, runs, probe_steps, True, folder) if side_by_side or measure_both else None
    costs = {r.name: _eval_seconds(r, eval_n or 256, eval_steps, guidances, device) if r.kind == "diffusion" else 0.0
             for r in recipes}
    # 5% of the budget stays unplanned: loading models and writing cards are not in the estimates (on the
    # CPU test build they added about a third to the evaluation's measured generation time)
    seconds = 0.95 * minutes * 60 - (time.perf_counter() - start) - sum(costs.values())
    plan = plan_budget(recipes, seconds, alone, together)
    short = [f"{r.name} ({plan['steps'][r.name]} steps)" for r in recipes if plan["steps"][r.name] <= r.warmup]
    if short:
        raise ValueError(f"minutes {minutes:g} leave {max(seconds, 0):.0f} s of training here, too little for "
                         f"{', '.join(short)} to pass its warm-up: give more minutes")
    final = [r.replace(steps=plan["steps"][r.name], max_seconds=None) for r in recipes]
    _train_processes(final, [runs / r.name for r in final], plan["mode"] == "side by side", folder)
    cards = []
    for r in final:
        rate = (together if plan["mode"] == "side by side" else alone)[r.name][0]
        note = (f"{notes} " if notes else "") + (
            f"Budgeted build: {minutes:g} min on {device} for {len(final)} recipes, trained {plan['mode']} "
            f"(side-by-side gain {plan['side_by_side_gain']}); a probe measured {rate:.2f} steps/s, so "
            f"{r.steps} steps end the schedule inside the budget.")
        cards.append(_card(r, runs / r.name, folder, note, eval_n, eval_steps, guidances, device))
    return cards


def _card(r: Recipe, run: Path, folder: Path, notes: str, eval_n, eval_steps, guidances, device) -> dict:
    """Write the card of a trained run into ``folder``, with the metrics ``evaluate`` measures."""
    from .evaluate import evaluate

    write_card(r, run, folder, notes=notes)  # a card without metrics lets ``evaluate`` load the model
    metrics = evaluate(r.name, n=eval_n, steps=eval_steps, guidances=guidances, device=device, folder=folder)
    return write_card(r, run, folder, metrics=metrics, notes=notes)
