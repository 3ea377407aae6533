"""The kernel module is in kernel style: checkpatch --strict finds nothing.

checkpatch.pl comes from Debian's linux-source package at build time
(tools/provision/checkpatch.sh); it is never committed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SOURCES = sorted(Path("kernel-module").glob("*.[ch]"))


def test_module_sources_are_checkpatch_clean() -> None:
    checkpatch = os.environ.get("MOCKACCEL_CHECKPATCH")
    assert checkpatch, "MOCKACCEL_CHECKPATCH is unset: run tools/provision/all.sh and source the env file it prints"
    ours = [path for path in SOURCES if path.name != "mockaccel_regs.h"]
    assert len(ours) >= 4, f"module sources missing from the sandbox: {SOURCES}"
    result = subprocess.run(
        ["perl", checkpatch, "--no-tree", "--strict", "--terse", "-f", *map(str, ours)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
