"""Build mock-accel.ko against the guest kernel's kbuild tree, out of the source folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

# libs/mockaccel-node/mockaccel_node/module.py -> the repository (or Pants sandbox) root
REPO_ROOT = Path(__file__).resolve().parents[3]
MODULE_SOURCES = REPO_ROOT / "kernel-module"


def build_module(kdir: Path, build_dir: Path, source_dir: Path = MODULE_SOURCES) -> Path:
    """``make -C kernel-module KDIR=… BUILD_DIR=…``; returns the .ko (raises with make's output)."""
    result = subprocess.run(
        ["make", "-s", "-C", str(source_dir), f"KDIR={kdir}", f"BUILD_DIR={build_dir}", "modules"],
        capture_output=True,
        text=True,
    )
    module = build_dir / "mock-accel.ko"
    if result.returncode != 0 or not module.is_file():
        raise RuntimeError(f"building mock-accel.ko failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return module
