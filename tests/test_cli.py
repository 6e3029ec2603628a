"""The ``coursekit`` command, run as a user runs it."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def coursekit(*args):
    return subprocess.run([sys.executable, "-m", "coursekit.cli", *args], capture_output=True, text=True, cwd=ROOT)


def test_help_lists_the_subcommands():
    out = coursekit("--help")
    assert out.returncode == 0 and "lessons" in out.stdout and "bench" in out.stdout


def test_lessons_check_passes_on_the_committed_lessons():
    out = coursekit("lessons", "--check")
    assert out.returncode == 0, out.stdout + out.stderr


def test_bench_reports_json_with_the_machine():
    out = coursekit("bench", "shapes", "--json", "--seconds", "0.2")
    report = json.loads(out.stdout)
    assert report["machine"]["torch"] and report["results"][0]["images_per_s"] > 0


def test_unknown_benchmark_is_refused():
    out = coursekit("bench", "nope")
    assert out.returncode == 2 and "known: shapes" in out.stderr
