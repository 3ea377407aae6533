"""Locate the control-plane binaries built by tools/provision/kubernetes.sh."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mockaccel_testing.settings import KUBE_BIN_ENV

PROVISION_HINT = (
    f"run tools/provision/kubernetes.sh and set {KUBE_BIN_ENV} to the folder it prints "
    f"(it prints KUBE_BIN=…; tools/provision/all.sh writes it into the env file)"
)

NAMES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "helm",
)


class BinariesNotFoundError(RuntimeError):
    """The binaries folder is not configured or incomplete."""


@dataclass(frozen=True)
class KubeBinaries:
    """Absolute paths of every test-bed binary."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    helm: Path

    @classmethod
    def locate(cls, kube_bin: Path | None) -> KubeBinaries:
        """Check the folder once, up front, so a missing binary fails with a hint, not ENOENT."""
        if kube_bin is None:
            raise BinariesNotFoundError(f"{KUBE_BIN_ENV} is not set: {PROVISION_HINT}")
        folder = kube_bin.expanduser().resolve()
        missing = [n for n in NAMES if not _is_executable(folder / n)]
        if missing:
            raise BinariesNotFoundError(f"{KUBE_BIN_ENV}={kube_bin} lacks {', '.join(missing)}: {PROVISION_HINT}")
        paths = {n.replace("-", "_"): folder / n for n in NAMES}
        return cls(**paths)


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)
