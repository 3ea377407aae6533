"""Loaded by every pytest run in the monorepo (Pants infers a dependency on ancestor conftest files).

The hygiene itself lives in libs/mockaccel-testing/mockaccel_hygiene.py, where it is typed and tested.
"""

from mockaccel_hygiene import pytest_runtest_call  # noqa: F401  (a pytest hook, found by name)
