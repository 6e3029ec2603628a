"""The everyday subset: ``pytest -m "not slow"`` leaves out what takes seconds per test (marked ``slow`` where
it is defined) and every notebook run (the solutions under nbval, marked here).

The student lessons are checked inside the solutions' nbval run, not by running them again: before nbval runs a
solution cell that holds an exercise, the lesson's copy of that cell (the answer replaced by its stub, as
``coursekit lessons`` writes it) runs in the same kernel and must stop with ``NotImplementedError``, the stub
reached by the cell's check; then the kernel's names and random states are put back (``notebooks.snapshot``), so
the solution runs in the state nbval alone would give it. That no later cell needs a solved exercise is read from
the code (``tests/test_notebooks.py``, ``notebooks.stub_readers``).

The prose is checked against the same run: when a solution's last cell has run, every decimal and percentage its
markdown states must be shown by some code cell, printed or in the code (``notebooks.unmeasured_numbers``), so that
prose cannot drift from what the cells measure. The last cell's test fails with the numbers that no cell shows.

The suite runs in two pytest-xdist workers (``pyproject.toml``). Each gets its share of the cores, set before any
test runs: two processes of one thread each do more work per second on two cores than one of two threads (a
unit test's small convolutions and a kernel's Python between them do not split well across threads), and
``OMP_NUM_THREADS`` carries the share to what a worker starts (notebook kernels, the CLI's subprocesses).
"""

import copy
import os

import pytest

from coursekit.notebooks import BEGIN, strip_solutions, unmeasured_numbers

SAVE = "__lesson_restore = __import__('coursekit.notebooks', fromlist=['snapshot']).snapshot(globals())"
RESTORE = "__lesson_restore()"

if os.environ.get("PYTEST_XDIST_WORKER"):
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    _threads = max(1, _cores // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    os.environ["OMP_NUM_THREADS"] = str(_threads)
    __import__("torch").set_num_threads(_threads)


# The seconds each file costs a worker (one thread), summed from ``pytest --durations=0`` on a 2-core AMD EPYC
# (2026-12-06; 3,094 s in all). xdist hands out whole files in collection order (``--no-loadscope-reorder``), so the
# longest start first and the short ones fill the tail: longest-first, the two workers end within seconds of each
# other (simulated from these costs: 1,548 s against 1,663 s measured with xdist's own order, by test count). A file
# not listed (under 10 s) runs after those listed. test_stable_diffusion and test_sparse grew later that day by estimate
# (+22 s, +8 s: sparse SDEdit on SD, the engine on SD's layout); on 2026-12-07 lesson 10 (one run of its cells under
# pytest, 2 threads: about 40 s) and test_stable_diffusion's half-precision run and find_pipeline (+30 s), by estimate.
COST = {"tests/test_zoo.py": 566, "tests/test_report.py": 272, "solutions/06_inversion_and_ddib.ipynb": 230,
        "solutions/07_diffedit.ipynb": 222, "solutions/03_guided_synthesis.ipynb": 204, "tests/test_cli.py": 171,
        "solutions/04_sdedit.ipynb": 152, "solutions/02_transformers_for_diffusion.ipynb": 147,
        "solutions/08_imagic.ipynb": 145, "tests/test_build.py": 118, "tests/test_architectures.py": 114,
        "tests/test_pages.py": 81, "solutions/09_one_network_or_many.ipynb": 78,
        "solutions/10_your_own_photos.ipynb": 50, "tests/test_imagic.py": 75,
        "tests/test_stable_diffusion.py": 125, "solutions/00_diffusion_in_one_notebook.ipynb": 65,
        "solutions/01_the_unet.ipynb": 61, "tests/test_inversion.py": 59,
        "solutions/05_edit_only_what_changed.ipynb": 40, "tests/test_sparse.py": 45, "tests/test_diffedit.py": 29,
        "tests/test_dit.py": 20, "tests/test_notebooks.py": 19, "tests/test_oracle.py": 19,
        "tests/test_widgets.py": 16, "tests/test_device_reads.py": 15, "tests/test_parity.py": 14,
        "tests/test_sdedit.py": 11, "tests/test_toy2d.py": 11}

LAST = {}  # a solution notebook's path -> the node id of its last cell, in run order
SHOWN = {}  # a solution notebook's path -> {id(cell): the outputs nbval recorded for it}


def pytest_collection_modifyitems(config, items):
    root = config.rootpath
    items.sort(key=lambda item: -COST.get(item.path.relative_to(root).as_posix(), 0))  # stable: cells stay in order
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
            LAST[item.path] = item.nodeid


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    cell = getattr(item, "cell", None)
    if call.when != "call" or cell is None or item.path.parent.name != "solutions":
        return
    SHOWN.setdefault(item.path, {})[id(cell)] = getattr(item, "test_outputs", None) or []
    report = outcome.get_result()
    if LAST.get(item.path) != item.nodeid or not report.passed:
        return
    nb, shown = copy.copy(item.parent.nb), SHOWN.pop(item.path)
    nb.cells = [copy.copy(c) for c in nb.cells]
    for original, c in zip(item.parent.nb.cells, nb.cells):
        if c.cell_type == "code":
            if id(original) not in shown:
                return  # a cell did not run (a selection): nothing to check against
            c.outputs = shown[id(original)]
    missing = unmeasured_numbers(nb)
    if missing:
        report.outcome = "failed"
        report.longrepr = ("numbers in the prose that no cell shows (printed, or in the code): "
                           + ", ".join(f"{number} (cell {k})" for k, number in missing)
                           + ". Print them from the cell that measures them, or correct the prose.")


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
