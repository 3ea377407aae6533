"""A control plane that cannot start must say why: missing binaries name the provisioning
script, and a crashing component's log tail is in the exception, not just "timeout"."""

from __future__ import annotations

from pathlib import Path

import pytest

from mockaccel_testing import BinariesNotFoundError, ControlPlane, ControlPlaneStartError, KubeBinaries, Settings


def test_unset_bin_dir_names_the_provisioning_script() -> None:
    with pytest.raises(BinariesNotFoundError, match=r"tools/provision/kubernetes\.sh"):
        KubeBinaries.locate(None)


def test_incomplete_bin_dir_lists_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "etcd").write_text("#!/bin/sh\n")
    (tmp_path / "etcd").chmod(0o755)
    with pytest.raises(BinariesNotFoundError, match=r"lacks kube-apiserver, .*helm: run tools/provision"):
        KubeBinaries.locate(tmp_path)


def test_crashing_apiserver_reports_its_log_tail(tmp_path: Path) -> None:
    # A missing prerequisite fails here (BinariesNotFoundError names the script), never skips.
    binaries = KubeBinaries.locate(Settings.from_env().kube_bin)
    plane = ControlPlane(binaries, tmp_path, apiserver_extra_args=["--no-such-flag"])
    with pytest.raises(ControlPlaneStartError) as failure:
        plane.start()
    message = str(failure.value)
    assert "kube-apiserver exited with code" in message
    assert "unknown flag: --no-such-flag" in message
    assert str(tmp_path / "logs" / "kube-apiserver.log") in message
    # etcd was running when the apiserver died; it must be gone too.
    assert not plane.processes
    assert _processes_mentioning(tmp_path) == []


def _processes_mentioning(work_dir: Path) -> list[str]:
    """Command lines of live processes that refer to `work_dir` (i.e. leftovers)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(work_dir) in argv:
            found.append(argv)
    return found
