"""The 9p share every guest run of the conformance suite mounts."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mockaccel_guest_run.guest_suite import fill_share


@pytest.fixture
def share() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="mockaccel-share-"))
    fill_share(folder)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
