"""Loaded by every pytest run in the monorepo (Pants infers a dependency on ancestor conftest files).

The hygiene itself lives in libs/mockaccel-testing/mockaccel_hygiene.py, where it is typed and tested.
"""

# pytest hooks, found by name
from mockaccel_hygiene import pytest_configure, pytest_runtest_call, pytest_sessionfinish  # noqa: F401
