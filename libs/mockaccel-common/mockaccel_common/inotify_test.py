from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from mockaccel_common.inotify import IN_CREATE, IN_DELETE, IN_MOVED_TO, Inotify


def test_reports_creates_renames_and_deletes(tmp_path: Path) -> None:
    inotify = Inotify()
    try:
        wd = inotify.add_watch(tmp_path, IN_CREATE | IN_MOVED_TO | IN_DELETE)
        assert inotify.read() == []
        (tmp_path / ".tmp").write_text("x")
        os.replace(tmp_path / ".tmp", tmp_path / "status")
        (tmp_path / "status").unlink()
        events = [(e.wd, e.mask & (IN_CREATE | IN_MOVED_TO | IN_DELETE), e.name) for e in inotify.read()]
        assert events == [(wd, IN_CREATE, ".tmp"), (wd, IN_MOVED_TO, "status"), (wd, IN_DELETE, "status")]
    finally:
        inotify.close()


def test_missing_path_is_an_oserror_with_errno(tmp_path: Path) -> None:
    inotify = Inotify()
    try:
        with pytest.raises(OSError, match="No such file") as caught:
            inotify.add_watch(tmp_path / "absent", IN_CREATE)
        assert caught.value.errno == errno.ENOENT
    finally:
        inotify.close()
