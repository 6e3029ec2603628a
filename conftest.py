"""The everyday subset: ``pytest -m "not slow"`` leaves out what takes seconds per test (marked ``slow`` where
it is defined) and every notebook run (the solutions under nbval, marked here)."""

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
