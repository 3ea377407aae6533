"""The one place that reads the environment.

Everything else receives a `Settings` value, so tests can build one by hand and nothing
changes behaviour behind a caller's back.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mockaccel_common.provisioned import cache_root, lookup

KUBE_BIN_ENV = "MOCKACCEL_KUBE_BIN"
WORK_DIR_ENV = "MOCKACCEL_CONTROL_PLANE_DIR"
START_TIMEOUT_ENV = "MOCKACCEL_CONTROL_PLANE_START_TIMEOUT"
APISERVER_EXTRA_ARGS_ENV = "MOCKACCEL_APISERVER_EXTRA_ARGS"

DEFAULT_START_TIMEOUT = 180.0


@dataclass(frozen=True)
class Settings:
    """Knobs of the test-bed.

    kube_bin: folder with kube-apiserver, kube-scheduler, kube-controller-manager, kubectl,
        etcd and helm (what tools/provision/kubernetes.sh prints).
    work_dir: where component state and logs go; None lets the caller pick a temp folder.
    start_timeout: seconds the whole control plane may take to become ready.
    apiserver_extra_args: appended to the kube-apiserver command line (a test-only knob,
        e.g. to check that a failing start reports the logs).
    cache_dir: the provisioning cache root (the CLI keeps its cluster state there).
    """

    kube_bin: Path | None = None
    work_dir: Path | None = None
    start_timeout: float = DEFAULT_START_TIMEOUT
    apiserver_extra_args: tuple[str, ...] = field(default_factory=tuple)
    cache_dir: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        timeout = env.get(START_TIMEOUT_ENV, "")
        kube_bin = lookup(KUBE_BIN_ENV, env)
        return cls(
            kube_bin=Path(kube_bin) if kube_bin else None,
            work_dir=Path(env[WORK_DIR_ENV]) if env.get(WORK_DIR_ENV) else None,
            start_timeout=float(timeout) if timeout else DEFAULT_START_TIMEOUT,
            apiserver_extra_args=tuple(shlex.split(env.get(APISERVER_EXTRA_ARGS_ENV, ""))),
            cache_dir=cache_root(env),
        )
