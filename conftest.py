"""The everyday subset: ``pytest -m "not slow"`` leaves out what takes seconds per test (marked ``slow`` where
it is defined) and every notebook run (the solutions under nbval, marked here).

The student lessons are checked inside the solutions' nbval run, not by running them again: before nbval runs a
solution cell that holds an exercise, the lesson's copy of that cell (the answer replaced by its stub, as
``coursekit lessons`` writes it) runs in the same kernel and must stop with ``NotImplementedError``, the stub
reached by the cell's check; then the kernel's names and random states are put back (``notebooks.snapshot``), so
the solution runs in the state nbval alone would give it. That no later cell needs a solved exercise is read from
the code (``tests/test_notebooks.py``, ``notebooks.stub_readers``).
"""

import pytest

from coursekit.notebooks import BEGIN, strip_solutions

SAVE = "__lesson_restore = __import__('coursekit.notebooks', fromlist=['snapshot']).snapshot(globals())"
RESTORE = "__lesson_restore()"


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)


def _run(item, source: str) -> list[tuple[str, str]]:
    """Run ``source`` in the item's nbval kernel; the (name, message) of each error it raised."""
    kernel, timeout = item.parent.kernel, item.config.option.nbval_cell_timeout
    msg_id = kernel.execute_cell_input(source, allow_stdin=False)
    kernel.await_reply(msg_id, timeout=timeout)
    errors = []
    while True:
        msg = item.parent.get_kernel_message(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "error":
            errors.append((msg["content"]["ename"], msg["content"]["evalue"]))
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return errors


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    cell = getattr(item, "cell", None)
    if cell is None or item.path.parent.name != "solutions" or BEGIN not in cell.source:
        return
    if _run(item, SAVE):
        raise RuntimeError("could not snapshot the kernel's state")
    try:
        errors = _run(item, strip_solutions(cell.source))
    finally:
        if _run(item, RESTORE):
            raise RuntimeError("could not restore the kernel's state")
    if [name for name, _ in errors] != ["NotImplementedError"]:
        pytest.fail(f"the lesson's copy of this exercise cell must stop at its stub with NotImplementedError; it "
                    f"raised {errors or 'nothing'}", pytrace=False)
