"""The ``coursekit`` command: ``coursekit --help`` lists the subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _lessons(args) -> int:
    from .notebooks import generate

    stale = generate(Path(args.solutions), Path(args.lessons), check=args.check)
    verb = "out of date" if args.check else "written"
    for path in stale:
        print(f"{verb}: {path}")
    if not stale:
        print(f"{args.lessons}/ is up to date with {args.solutions}/")
    return 1 if args.check and stale else 0


def _bench(args) -> int:
    from .bench import BENCHMARKS, machine

    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"coursekit bench: unknown benchmark {unknown[0]!r}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    rows = []
    for name in names:
        if name == "shapes":
            rows.append(BENCHMARKS[name](**({"seconds": args.seconds} if args.seconds else {})))
        else:
            options = dict(device=args.device, batch=args.batch, steps=args.steps, rounds=args.rounds,
                           sample_steps=args.sample_steps, sample_batch=args.sample_batch,
                           precision=args.precision, compile=args.compile)
            rows.append(BENCHMARKS[name](**options))
    report = {"machine": machine(), "results": rows}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"machine: {report['machine']}")
        for row in rows:
            print(", ".join(f"{k}={v}" for k, v in row.items()))
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
    p.set_defaults(run=_lessons)

    p = sub.add_parser("bench", help="run benchmarks and report throughput with the machine that gave it")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})")
    p.add_argument("--seconds", type=float, default=None, help="time budget of the shapes benchmark")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    p.add_argument("--batch", type=int, default=None, help="training batch (default: per model and device)")
    p.add_argument("--steps", type=int, default=3, help="timed training steps per round (default: 3)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per side (default: 3)")
    p.add_argument("--sample-steps", type=int, default=50, help="DDIM steps of the sampling timing (default: 50)")
    p.add_argument("--sample-batch", type=int, default=None, help="images sampled at once (default: --batch)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default=None,
                   help="both sides' precision (default: bf16 autocast on CUDA, fp32 on CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile coursekit's network")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=_bench)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
