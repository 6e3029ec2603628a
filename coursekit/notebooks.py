"""Write the student lessons from the solution notebooks.

``solutions/NN_name.ipynb`` is the source of truth. In its code cells, each region between a line
``### BEGIN SOLUTION`` and a line ``### END SOLUTION`` is an exercise answer; the lesson copy
replaces it by a stub that raises ``NotImplementedError``, keeping the indentation (nbgrader's
convention, without its dependency). Cells with a region are tagged ``exercise`` in the lesson and
``raises-exception``, so "Run All" in Jupyter goes past unsolved exercises.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = ["# YOUR CODE HERE", 'raise NotImplementedError("Exercise: write your solution here")']
EXERCISE_TAGS = ["exercise", "raises-exception"]
# The first cell of every notebook: install the course on Colab only (a no-op everywhere else).
COLAB_CELL = """\
# On Google Colab, install the course first; elsewhere this cell does nothing.
import sys

if "google.colab" in sys.modules:
    %pip install -q "coursekit @ git+https://github.com/coursekit/coursekit@main\""""


def strip_solutions(source: str) -> str:
    """Replace every solution region of a cell's source by the stub."""
    if not isinstance(source, str):
        raise ValueError(f"source must be a str, got {type(source).__name__}")
    lines, out, inside, indent = source.split("\n"), [], False, ""
    for number, line in enumerate(lines, 1):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise ValueError(f"source has a nested {BEGIN} at line {number}")
            inside, indent = True, re.match(r"\s*", line).group(0)
            out.extend(indent + s for s in STUB)
        elif marker == END:
            if not inside:
                raise ValueError(f"source has {END} without {BEGIN} at line {number}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"source has {BEGIN} without {END}")
    return "\n".join(out)


def make_lesson(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student copy of a solution notebook (a new notebook; the input is not modified)."""
    if not isinstance(solution, dict) or "cells" not in solution:
        raise ValueError(f"solution must be a notebook (nbformat.NotebookNode), got {type(solution).__name__}")
    lesson = nbformat.from_dict(solution)
    for cell in lesson.cells:
        if cell.cell_type == "code" and BEGIN in cell.source:
            cell.source = strip_solutions(cell.source)
            tags = cell.metadata.get("tags", [])
            cell.metadata["tags"] = tags + [t for t in EXERCISE_TAGS if t not in tags]
    return lesson


def generate(solutions: Path, lessons: Path, check: bool = False) -> list[Path]:
    """Write ``lessons/X.ipynb`` for every ``solutions/X.ipynb``. With ``check``, write nothing and
    return the lessons that are missing or differ from a fresh generation."""
    solutions, lessons = Path(solutions), Path(lessons)
    if not solutions.is_dir():
        raise ValueError(f"solutions must be a directory of notebooks, got {solutions}")
    stale = []
    for src in sorted(solutions.glob("*.ipynb")):
        text = nbformat.writes(make_lesson(nbformat.read(src, as_version=4))) + "\n"
        dst = lessons / src.name
        if dst.exists() and dst.read_text() == text:
            continue
        stale.append(dst)
        if not check:
            lessons.mkdir(parents=True, exist_ok=True)
            dst.write_text(text)
    return stale


def render_html(solutions: Path, out: Path, only: list[str] | None = None, timeout: int = 600) -> list[Path]:
    """Run each solution notebook from a fresh kernel (in the solutions' folder, as the tests do) and write it with
    its outputs and figures as one self-contained ``out/X.html``: the executed lessons, readable without running
    them. ``only``: the notebooks whose names start with one of these (e.g. "03"). The notebooks themselves are
    not changed. Needs nbconvert (installed with JupyterLab, and with the dev extra)."""
    try:
        from nbclient import NotebookClient
        from nbconvert import HTMLExporter
    except ImportError as error:
        raise RuntimeError(f"rendering lessons needs nbclient and nbconvert ({error}): "
                           "python -m pip install -e \".[lab]\"") from error
    solutions, out = Path(solutions), Path(out)
    if not solutions.is_dir():
        raise ValueError(f"solutions must be a directory of notebooks, got {solutions}")
    paths = sorted(p for p in solutions.glob("*.ipynb") if not only or any(p.name.startswith(o) for o in only))
    if not paths:
        raise ValueError(f"only must name notebooks in {solutions}/ (by their leading number), got {only}")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent.resolve())}}).execute()
        html, _ = HTMLExporter(embed_images=True).from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
        written.append(out / f"{path.stem}.html")
        written[-1].write_text(html, encoding="utf-8")
    return written
