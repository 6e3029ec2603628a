"""The ``coursekit`` command: ``coursekit --help`` lists the subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _lessons(args) -> int:
    from .notebooks import generate

    if args.html or args.slides:
        from .pages import render

        for path in render(Path(args.solutions), html=args.html, slides=args.slides, only=args.only):
            print(f"rendered: {path}")
        return 0
    stale = generate(Path(args.solutions), Path(args.lessons), check=args.check)
    verb = "out of date" if args.check else "written"
    for path in stale:
        print(f"{verb}: {path}")
    if not stale:
        print(f"{args.lessons}/ is up to date with {args.solutions}/")
    return 1 if args.check and stale else 0


def _bench(args) -> int:
    from .bench import BENCHMARKS, run
    from .machine import machine

    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"coursekit bench: unknown benchmark {unknown[0]!r}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    options = dict(seconds=args.seconds, device=args.device, batch=args.batch, steps=args.steps, rounds=args.rounds,
                   sample_steps=args.sample_steps, sample_batch=args.sample_batch, precision=args.precision,
                   compile=args.compile, resolution=args.resolution)
    rows = [run(name, **options) for name in names]
    report = {"machine": machine(), "results": rows}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"machine: {report['machine']}")
        for row in rows:
            print(", ".join(f"{k}={v}" for k, v in row.items()))
    return 0


def _train(args) -> int:
    from .train import fit
    from .zoo import recipe

    r = recipe(args.recipe)
    if args.steps is not None:
        r = r.replace(steps=args.steps)
    summary = fit(r, args.out, max_seconds=args.max_seconds, resume=not args.no_resume, progress=not args.quiet,
                  init_folder=args.init_folder)
    if "sha256" in summary:  # the main process's summary (the others have no weights file to report)
        print(json.dumps(summary))
    return 0


def _eval(args) -> int:
    from .evaluate import evaluate

    result = evaluate(args.name, n=args.n, steps=args.steps, folder=args.folder)
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


def _report(args) -> int:
    from .report import report

    result = report(quick=args.quick, sections=args.sections or None)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"machine: {result['machine']}")
        for name, section in result["sections"].items():
            print(f"\n{name} ({section['seconds']} s): {json.dumps(section['setup'])}")
            for row in section["rows"]:
                print("  " + ", ".join(f"{k}={v}" for k, v in row.items()))
    return 0


def _zoo(args) -> int:
    from .build import build
    from .zoo import CHECKPOINTS, card, names

    if args.action == "list":
        for name in names(args.folder or CHECKPOINTS):
            info = card(name, args.folder or CHECKPOINTS)
            print(f"{name}: {info['parameters'] / 1e6:.1f} M parameters, {info['steps']} steps on {info['trained_on']}")
        return 0
    overrides = {}
    for item in args.set or []:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    cards = build(Path(args.folder or "zoo-build"), args.names or None, minutes=args.minutes, overrides=overrides,
                  side_by_side={"measure": None, "yes": True, "no": False}[args.side_by_side],
                  eval_n=args.eval_n, eval_steps=args.eval_steps, notes=args.notes, runs=args.runs, force=args.force)
    print(json.dumps([{k: c[k] for k in ("name", "steps", "wall_seconds", "sha256", "metrics")} for c in cards],
                     indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    from .bench import BENCHMARKS

    parser = argparse.ArgumentParser(prog="coursekit", description="Applications of diffusion models on images: "
                                     "the course's command-line tools.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("lessons", help="write the student lessons/ from solutions/ (exercise answers become stubs)")
    p.add_argument("--solutions", default="solutions", help="folder of solution notebooks (default: solutions)")
    p.add_argument("--lessons", default="lessons", help="folder to write the lessons to (default: lessons)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a lesson is out of date")
    p.add_argument("--html", metavar="DIR", default=None,
                   help="instead: run the solutions and write them, executed with their figures, as DIR/NN_name.html")
    p.add_argument("--slides", metavar="DIR", default=None,
                   help="instead (or with --html): run the solutions and write them as reveal.js decks, "
                        "DIR/NN_name.slides.html, for teaching from; they open offline")
    p.add_argument("--only", nargs="+", metavar="NN", default=None,
                   help="with --html or --slides: only these lessons (e.g. 00 03)")
    p.set_defaults(run=_lessons)

    p = sub.add_parser("bench", help="run benchmarks and report throughput with the machine that gave it")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})")
    p.add_argument("--seconds", type=float, default=None, help="time budget of the shapes benchmark")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    p.add_argument("--batch", type=int, default=None, help="training batch (default: per model and device)")
    p.add_argument("--steps", type=int, default=None,
                   help="timed training steps (default: 3 per round for the model rows; for the trainer-* rows "
                        "200 on CUDA, 10 on CPU)")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds per side (default: 3; trainer-* 2)")
    p.add_argument("--sample-steps", type=int, default=None, help="DDIM steps of the sampling timing (default: 50)")
    p.add_argument("--sample-batch", type=int, default=None, help="images sampled at once (default: --batch)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default=None,
                   help="both sides' precision (default: bf16 autocast on CUDA, fp32 on CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile coursekit's network")
    p.add_argument("--resolution", type=int, default=None, help="image side of the sparse benchmark (default: 256); latent side of sparse-sd (default: 64, a 512x512 image)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=_bench)

    from .report import SECTIONS

    p = sub.add_parser("report", help="reproduce the course's headline numbers from the shipped models")
    p.add_argument("sections", nargs="*", metavar="SECTION", choices=[[]] + list(SECTIONS),
                   help=f"sections to run (default: all of {', '.join(SECTIONS)})")
    p.add_argument("--quick", action="store_true", help="small samples: checks the directions, not the numbers")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=_report)

    from .zoo import RECIPES

    p = sub.add_parser("train", help="train a named recipe (resumes from OUT/checkpoint); works under accelerate launch")
    p.add_argument("recipe", metavar="RECIPE", help=f"one of {', '.join(RECIPES)}, or a model card or recipe "
                                                    "JSON file (retrains that card's model)")
    p.add_argument("--out", required=True, help="folder for the checkpoint, loss log and final weights")
    p.add_argument("--steps", type=int, default=None, help="total steps (default: the recipe's)")
    p.add_argument("--max-seconds", type=float, default=None, help="training-time budget (default: the recipe's)")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if OUT/checkpoint exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--init-folder", default=None, help="where a recipe's init model is (default: the shipped zoo)")
    p.set_defaults(run=_train)

    p = sub.add_parser("eval", help="measure a zoo model: caption accuracy (judged by shapes-classifier) or the "
                                    "classifier's own accuracy")
    p.add_argument("name", metavar="NAME", help="a model of the zoo (coursekit zoo list)")
    p.add_argument("--n", type=int, default=None, help="samples (multiple of 32; default 256, 1024 for the classifier)")
    p.add_argument("--steps", type=int, default=25, help="DDIM steps per sample (default: 25)")
    p.add_argument("--folder", default=None, help="a folder of cards and weights (default: the shipped zoo)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=_eval)

    p = sub.add_parser("zoo", help="list the shipped models, or build (train, evaluate, card) them all")
    p.add_argument("action", choices=["list", "build"])
    p.add_argument("names", nargs="*", help="recipes to build (default: the classifier and the three diffusion models)")
    p.add_argument("--folder", default=None, help="where cards and weights are (list) or go (build)")
    p.add_argument("--set", action="append", metavar="KEY=JSON",
                   help="override a diffusion recipe field for this build, e.g. --set batch_size=64")
    p.add_argument("--runs", default=None, help="where training runs and their checkpoints go (default: FOLDER/runs)")
    p.add_argument("--eval-n", type=int, default=None, help="evaluation samples (default 256 / 1024)")
    p.add_argument("--eval-steps", type=int, default=25, help="DDIM steps in evaluation (default: 25)")
    p.add_argument("--notes", default="", help="a note for the cards (e.g. why a run was cut short)")
    p.add_argument("--minutes", type=float, default=None,
                   help="wall-clock budget of the whole build: probes each recipe's speed and sizes its steps "
                        "so that training and evaluation end inside it (default: the recipes' own steps)")
    p.add_argument("--side-by-side", choices=["measure", "yes", "no"], default="measure",
                   help="with --minutes: train the recipes at once, one after another, or measure which is "
                        "faster (default)")
    p.add_argument("--force", action="store_true",
                   help="overwrite models and runs already in --folder / --runs, and build over cards of "
                        "another code version")
    p.set_defaults(run=_zoo)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ValueError as e:  # bad input: the message names the argument; no traceback for a user's mistake
        print(f"coursekit {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
