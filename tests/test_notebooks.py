"""Notebook tooling: solutions -> lessons generation, hygiene of committed notebooks, and lessons that
fail only at their exercise stubs. (The solutions themselves run under ``pytest --nbval-lax``.)"""

from pathlib import Path

import nbformat
import pytest

from coursekit.notebooks import BEGIN, COLAB_CELL, END, generate, make_lesson, strip_solutions, stub_readers

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
LESSONS = sorted((ROOT / "lessons").glob("*.ipynb"))


def test_there_is_a_lesson_for_every_solution():
    assert SOLUTIONS and [p.name for p in SOLUTIONS] == [p.name for p in LESSONS]


def test_committed_lessons_equal_a_fresh_generation():
    assert generate(ROOT / "solutions", ROOT / "lessons", check=True) == []


@pytest.mark.parametrize("path", SOLUTIONS + LESSONS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_notebooks_hold_no_outputs_and_start_with_the_colab_cell(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "strip outputs before committing"
    assert nb.cells[0].source == COLAB_CELL


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_every_lesson_has_at_least_two_exercises(path):
    lesson = make_lesson(nbformat.read(path, as_version=4))
    exercises = [c for c in lesson.cells if "exercise" in c.metadata.get("tags", [])]
    assert len(exercises) >= 2
    assert all(BEGIN not in c.source and "NotImplementedError" in c.source for c in exercises)


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_no_cell_after_an_exercise_needs_its_answer(path):
    """A student who skips an exercise can run the rest of the lesson: no cell outside the exercises reads a stub
    or what an exercise cell binds after reaching one. (That each stub is reached by its cell's check is checked
    in the solutions' nbval run, by ``conftest.py``.)"""
    assert stub_readers(nbformat.read(path, as_version=4)) == []


def test_stub_readers_finds_a_cell_that_needs_an_answer():
    lesson = make_lesson(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(f"ready = 1\ndef f(x):\n    {BEGIN}\n    return x\n    {END}\n\n"
                                  "def g(x):\n    return f(x) + 1\n\ny = f(2)\nassert y == 2"),
        nbformat.v4.new_code_cell("print(ready)"),
        nbformat.v4.new_code_cell("z = g(1) + y"),
    ]))
    assert stub_readers(lesson) == [(2, "g"), (2, "y")]


@pytest.mark.slow
def test_the_nbval_run_fails_a_stub_that_its_check_never_reaches(tmp_path):
    """conftest.py's check, run as the suite runs it: an exercise whose check never calls the function fails; one
    whose check does passes, and the solution then runs in the state it would have had alone."""
    import shutil
    import subprocess
    import sys

    shutil.copy(ROOT / "conftest.py", tmp_path)
    (tmp_path / "solutions").mkdir()
    cells = [nbformat.v4.new_code_cell(f"def f(x):\n    {BEGIN}\n    return x\n    {END}\n\nassert True"),
             nbformat.v4.new_code_cell("import random\nrandom.seed(0)"),
             nbformat.v4.new_code_cell(f"def g(x):\n    {BEGIN}\n    return x\n    {END}\n\n"
                                       "first = random.random()  # drawn by the stub's run too, then put back\n"
                                       "assert g(1) == 1"),
             nbformat.v4.new_code_cell("random.seed(0)\nassert first == random.random()")]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), tmp_path / "solutions" / "00_x.ipynb")
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--nbval-lax", "-q",
                          "solutions/00_x.ipynb"], cwd=tmp_path, capture_output=True, text=True)
    assert "1 failed, 3 passed" in out.stdout, out.stdout[-3000:]
    assert "must stop at its stub with NotImplementedError; it raised nothing" in out.stdout
    # the prose check: a number the markdown states and no cell shows fails the notebook's last cell
    cells = [nbformat.v4.new_markdown_cell("The mean is 0.50, the share 13% and the error 0.021."),
             nbformat.v4.new_code_cell("print(f'mean {0.5:.2f}, error {0.0214:.3f}')"), nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), tmp_path / "solutions" / "01_y.ipynb")
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--nbval-lax", "-q",
                          "solutions/01_y.ipynb"], cwd=tmp_path, capture_output=True, text=True)
    flagged = next((line for line in out.stdout.splitlines() if "no cell shows" in line), "")
    assert "1 failed, 1 passed" in out.stdout and "13% (cell 0)" in flagged, out.stdout[-3000:]
    assert "0.50" not in flagged and "0.021" not in flagged  # shown, at the prose's precision


def test_unmeasured_numbers_are_prose_numbers_that_no_cell_shows():
    from coursekit.notebooks import unmeasured_numbers

    v4 = nbformat.v4
    prose = ('Sec. 4.3 quotes "7.5x at 1.2%"; we measured 0.83 and 29.8 dB, with `0.99` in code and $0.5$ in maths; '
             "12.5 sits only in a comment and 13% nowhere.")
    shown = v4.new_code_cell("psnr = 29.81  # 12.5 in a comment\nprint(5 / 6)",
                             outputs=[v4.new_output("stream", name="stdout", text="0.8333333\n")])
    nb = v4.new_notebook(cells=[v4.new_markdown_cell(prose), shown, v4.new_markdown_cell("Kept: 83%.")])
    assert unmeasured_numbers(nb) == [(0, "12.5"), (0, "13%")]  # 83% is 0.833 shown as a share


def test_strip_solutions_keeps_indentation_and_code_around_the_region():
    src = f"def f(x):\n    {BEGIN}\n    return x + 1\n    {END}\n\nassert f(1) == 2"
    assert strip_solutions(src) == (
        "def f(x):\n    # YOUR CODE HERE\n"
        '    raise NotImplementedError("Exercise: write your solution here")\n\nassert f(1) == 2'
    )


@pytest.mark.parametrize("src, problem", [
    (f"{BEGIN}\nx = 1", "without"),
    (f"{END}\nx = 1", "without"),
    (f"{BEGIN}\n{BEGIN}\n{END}", "nested"),
])
def test_strip_solutions_rejects_broken_regions(src, problem):
    with pytest.raises(ValueError, match=problem):
        strip_solutions(src)


def test_rendering_refuses_names_that_match_no_lesson(tmp_path):
    from coursekit.pages import render

    with pytest.raises(ValueError, match="^only must name notebooks"):
        render(ROOT / "solutions", html=tmp_path, only=["99"])
