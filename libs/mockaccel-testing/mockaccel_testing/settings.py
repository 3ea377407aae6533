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
# What tools/provision/node-runtime.sh prints, for the real kubelet node (kubelet_node.py).
CONTAINERD_BIN_ENV = "MOCKACCEL_CONTAINERD_BIN"
RUNC_ENV = "MOCKACCEL_RUNC"
CNI_BIN_DIR_ENV = "MOCKACCEL_CNI_BIN_DIR"
PAUSE_IMAGE_ENV = "MOCKACCEL_PAUSE_IMAGE"
PAUSE_IMAGE_ARCHIVE_ENV = "MOCKACCEL_PAUSE_IMAGE_ARCHIVE"
BUSYBOX_IMAGE_ENV = "MOCKACCEL_BUSYBOX_IMAGE"
BUSYBOX_IMAGE_ARCHIVE_ENV = "MOCKACCEL_BUSYBOX_IMAGE_ARCHIVE"

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
    node_runtime: what tools/provision/node-runtime.sh provisioned for a real kubelet
        node, keyed by its output names (CONTAINERD_BIN, RUNC, ...); empty when unset.
    """

    kube_bin: Path | None = None
    work_dir: Path | None = None
    start_timeout: float = DEFAULT_START_TIMEOUT
    apiserver_extra_args: tuple[str, ...] = field(default_factory=tuple)
    cache_dir: Path | None = None
    node_runtime: Mapping[str, str] = field(default_factory=dict)

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
            node_runtime={key: value for key, name in NODE_RUNTIME_ENV.items() if (value := lookup(name, env))},
        )


# node_runtime keys (node-runtime.sh output names) and their environment variables.
NODE_RUNTIME_ENV = {
    "CONTAINERD_BIN": CONTAINERD_BIN_ENV,
    "RUNC": RUNC_ENV,
    "CNI_BIN_DIR": CNI_BIN_DIR_ENV,
    "PAUSE_IMAGE": PAUSE_IMAGE_ENV,
    "PAUSE_IMAGE_ARCHIVE": PAUSE_IMAGE_ARCHIVE_ENV,
    "BUSYBOX_IMAGE": BUSYBOX_IMAGE_ENV,
    "BUSYBOX_IMAGE_ARCHIVE": BUSYBOX_IMAGE_ARCHIVE_ENV,
}
