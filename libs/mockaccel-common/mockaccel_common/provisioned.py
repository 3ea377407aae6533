"""Where provisioned parts live: the one lookup, used by the tests, the tools and the vfio-server.

tools/provision/*.sh build or fetch every real part (Kubernetes binaries,
libvfio-user, QEMU, the guest kernel, …) into one cache root and record their
paths; this module finds them again, or fails with the command that provides
them.

Lookup order for each ``MOCKACCEL_*`` name: the process environment (Pants
passes the names listed in pants.toml ``[test] extra_env_vars``), then the
environment file ``<cache>/env.sh`` that tools/provision/all.sh writes. The
cache root follows tools/lib/common.sh exactly: ``$MOCKACCEL_CACHE``, else
``${XDG_CACHE_HOME:-$HOME/.cache}/mock-accel``. A missing prerequisite is a
failure naming the script to run, never a skip.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

SCRIPTS = {
    "MOCKACCEL_KUBE_BIN": "tools/provision/kubernetes.sh",
    "MOCKACCEL_LIBVFIO_USER_PREFIX": "tools/provision/libvfio-user.sh",
    "MOCKACCEL_QEMU": "tools/provision/qemu.sh",
    "MOCKACCEL_GUEST_KERNEL": "tools/provision/guest-kernel.sh",
    "MOCKACCEL_GUEST_KDIR": "tools/provision/guest-kernel.sh",
    "MOCKACCEL_GUEST_KVER": "tools/provision/guest-kernel.sh",
    "MOCKACCEL_GUEST_DEBUG_KERNEL": "tools/provision/guest-debug-kernel.sh",
    "MOCKACCEL_GUEST_DEBUG_KDIR": "tools/provision/guest-debug-kernel.sh",
    "MOCKACCEL_GUEST_DEBUG_KVER": "tools/provision/guest-debug-kernel.sh",
    "MOCKACCEL_WORDLIST": "tools/provision/wordlist.sh",
    "MOCKACCEL_KUBELET_CLIENT": "tools/provision/kubelet-client.sh",
    "MOCKACCEL_REFERENCE_PLUGIN": "tools/provision/reference-plugin.sh",
    "MOCKACCEL_GUEST_ROOTFS": "tools/provision/guest-rootfs.sh",
    "MOCKACCEL_GUEST_9P_MODULES": "tools/provision/guest-rootfs.sh",
    "MOCKACCEL_CHECKPATCH": "tools/provision/checkpatch.sh",
}
_EXPORT_RE = re.compile(r"^export (MOCKACCEL_[A-Z0-9_]+)='([^']*)'$")


class PrerequisiteMissingError(RuntimeError):
    """A provisioned part is not configured or not on disk; the message names the script."""


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("MOCKACCEL_CACHE"):
        return Path(env["MOCKACCEL_CACHE"])
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "mock-accel"


def env_file(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The values tools/provision/all.sh recorded (empty when it has not run)."""
    path = cache_root(environ) / "env.sh"
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    return {m.group(1): m.group(2) for line in lines if (m := _EXPORT_RE.match(line.strip()))}


def lookup(name: str, environ: Mapping[str, str] | None = None) -> str:
    """The configured value of ``name`` ("" when neither the environment nor env.sh has one)."""
    env = os.environ if environ is None else environ
    return env.get(name) or env_file(environ).get(name, "")


def require(name: str, environ: Mapping[str, str] | None = None) -> Path:
    """The existing path named by ``name``; raises PrerequisiteMissingError with the script to run."""
    value = lookup(name, environ)
    hint = f"run tools/provision/all.sh (or {SCRIPTS.get(name, 'tools/provision')})"
    if not value:
        raise PrerequisiteMissingError(f"{name} is not set and not in {cache_root(environ) / 'env.sh'}: {hint}")
    path = Path(value)
    if not path.exists():
        raise PrerequisiteMissingError(f"{name}={value} does not exist: {hint}")
    return path
