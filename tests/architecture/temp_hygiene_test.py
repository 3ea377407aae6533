"""The root conftest gives each pytest process a temporary directory of its own (no shared cleanup to race)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

INNER = """
import os
from pathlib import Path


def test_records_its_tmp_path(tmp_path):
    Path(os.environ["RECORD"]).write_text(str(tmp_path))
    assert os.environ["OUTCOME"] == "pass"
"""


def test_this_process_has_a_base_directory_of_its_own(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    base = Path(pytestconfig.option.basetemp)
    assert base.parent == Path(tempfile.gettempdir())
    assert base.name.startswith("pytest-")
    assert tmp_path.is_relative_to(base.resolve())  # tmp_path_factory was made after the hook set it


def _inner_run(folder: Path, outcome: str) -> tuple[int, Path]:
    folder.mkdir()
    (folder / "conftest.py").write_text("from mockaccel_hygiene import pytest_configure, pytest_sessionfinish\n")
    (folder / "inner_test.py").write_text(INNER)
    record = folder / "tmp_path.txt"
    path = os.pathsep.join(os.path.abspath(entry) for entry in sys.path)  # the sandbox's entries are relative
    env = {**os.environ, "PYTHONPATH": path, "RECORD": str(record), "OUTCOME": outcome}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(folder), str(folder)],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert record.exists(), done.stdout + done.stderr
    return done.returncode, Path(record.read_text())


def test_a_passing_session_removes_its_directory_and_a_failing_one_keeps_it(tmp_path: Path) -> None:
    code, passed_tmp = _inner_run(tmp_path / "passing", "pass")
    assert code == 0
    assert "pytest-of-" not in str(passed_tmp)
    assert not passed_tmp.exists()

    code, failed_tmp = _inner_run(tmp_path / "failing", "fail")
    assert code == 1
    assert failed_tmp.exists()
    own_base = failed_tmp.parent
    while not own_base.parent.samefile(tempfile.gettempdir()):
        own_base = own_base.parent
    assert own_base.name.startswith("pytest-")
    assert not passed_tmp.is_relative_to(own_base)  # each session had its own
    shutil.rmtree(own_base)
