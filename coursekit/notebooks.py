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


def snapshot(namespace: dict):
    """What a cell can change that later cells read: the names in ``namespace`` (a kernel's globals, shallow) and
    the random states of torch, numpy and ``random``. Returns ``restore()``, which puts them back. The test suite
    runs a lesson's exercise cell between the two, in the kernel that then runs the solution (``conftest.py``)."""
    import random

    import numpy as np
    import torch

    if not isinstance(namespace, dict):
        raise ValueError(f"namespace must be a dict (a kernel's globals()), got {type(namespace).__name__}")
    names = dict(namespace)
    states = (torch.random.get_rng_state(), np.random.get_state(), random.getstate(),
              torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None)

    def restore() -> None:
        namespace.clear()
        namespace.update(names)
        torch.random.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
        if states[3] is not None:
            torch.cuda.set_rng_state_all(states[3])

    return restore


def stub_readers(lesson: nbformat.NotebookNode) -> list[tuple[int, str]]:
    """(cell index, name) wherever a cell that is not an exercise reads a name an unsolved exercise leaves
    unusable: a function whose body is a stub, a function that calls one, or a name an exercise cell binds at
    or after its first use of one (a stub stops the cell there). A name bound again before it is read is usable
    again. Empty when the lesson runs past its stubs. Read from the code (``ast``, one top-level statement at a
    time: what a statement reads that it does not bind itself), so no cell is run; the arguments of magics are
    not read."""
    import ast

    from IPython.core.inputtransformer2 import TransformerManager

    def names(node, ctx):
        return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ctx)}

    def free(statement) -> set[str]:  # what the statement reads from the cell's namespace
        local = names(statement, ast.Store) | {a.arg for a in ast.walk(statement) if isinstance(a, ast.arg)}
        return names(statement, ast.Load) - local

    translate = TransformerManager().transform_cell
    unusable: set[str] = set()
    found = []
    for index, cell in enumerate(lesson.cells):
        if cell.cell_type != "code":
            continue
        exercise, stopped = "exercise" in cell.metadata.get("tags", []), False
        for statement in ast.parse(translate(cell.source)).body:
            reads = free(statement)
            stub = any(isinstance(n, ast.Raise) and "NotImplementedError" in ast.unparse(n) for n in ast.walk(statement))
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bound, needs = {statement.name}, stub or bool(reads & unusable)
            else:
                bound = names(statement, ast.Store) - {n for c in ast.walk(statement) for g in getattr(c, "generators", [])
                                                        for n in names(g.target, ast.Store)}
                if not exercise:
                    found += [(index, name) for name in sorted(reads & unusable)]
                stopped = stopped or (exercise and (stub or bool(reads & unusable)))
                needs = stopped
            unusable = unusable | bound if needs else unusable - bound
    return found


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


# A number the prose states: a decimal (0.54, 29.8) or a percentage (13%); integers are left out (counts, steps,
# sizes and years are too many to tell apart from measurements).
_PROSE_NUMBER = re.compile(r"(?<![\w.])(\d+\.\d+|\d+%)(?![\w.]\d)")
# code, maths, quotations, and references to a paper's sections, equations, figures and tables
_NOT_PROSE = re.compile(r"`[^`]*`|\$\$.*?\$\$|\$[^$]*\$|\"[^\"]*\"|\u201c[^\u201d]*\u201d"
                        r"|\b(?:sec|secs|section|eq|eqs|fig|figs|figure|table|appendix|alg|algorithm)\.?\s*\d+(?:\.\d+)*"
                        r"(?:\s*(?:,|and|&)\s*\d+(?:\.\d+)*)*",
                        re.S | re.I)
_SHOWN_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e-?\d+)?%?")


def unmeasured_numbers(nb: nbformat.NotebookNode) -> list[tuple[int, str]]:
    """(cell index, number) for each decimal or percentage in an executed notebook's markdown that none of its code
    cells shows: neither an output (printed text, a value's text form) nor the code itself (its comments left out).
    A shown number matches at the prose's precision (0.833 shows 0.83; 0.133 shows 13%). Numbers inside code spans,
    formulas and quotations (a paper's or a card's words) are not checked. What it returns is prose that has drifted
    from the cells, or a number taken from elsewhere that a cell should print."""
    shown: list[float] = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        texts = [re.sub(r"#.*", "", cell.source)]
        for output in cell.get("outputs", []):
            texts.append(output.get("text", ""))
            texts.append(output.get("data", {}).get("text/plain", ""))
        for text in texts:
            for token in _SHOWN_NUMBER.findall("".join(text) if isinstance(text, list) else text):
                try:
                    value = float(token.rstrip("%"))
                except ValueError:
                    continue
                shown += [abs(value) / 100, abs(value)] if token.endswith("%") else [abs(value), abs(value) * 100]
    missing = []
    for k, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        for number in _PROSE_NUMBER.findall(_NOT_PROSE.sub(" ", cell.source)):
            value = float(number.rstrip("%"))
            places = 0 if number.endswith("%") else len(number.split(".")[1])
            if not any(abs(round(v, places) - value) < 10 ** -(places + 3) for v in shown):
                missing.append((k, number))
    return missing
