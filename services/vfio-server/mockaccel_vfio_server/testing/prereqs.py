"""Find the provisioned parts the integration tests need, or fail with what to run.

Lookup order for each variable: the process environment (Pants passes the
names listed in pants.toml ``[test] extra_env_vars``), then the environment
file ``$MOCKACCEL_CACHE/env.sh`` that tools/provision/all.sh writes (for names
not passed through yet). A missing prerequisite is a failure with the command
that provisions it, never a skip.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

HINTS = {
    "MOCKACCEL_LIBVFIO_USER_PREFIX": "tools/provision/libvfio-user.sh",
    "MOCKACCEL_QEMU": "tools/provision/qemu.sh",
    "MOCKACCEL_GUEST_KERNEL": "tools/provision/guest-kernel.sh",
    "MOCKACCEL_WORDLIST": "tools/provision/wordlist.sh",
}
_EXPORT_RE = re.compile(r"^export (MOCKACCEL_[A-Z_]+)='([^']*)'$")


class PrerequisiteMissingError(RuntimeError):
    """A provisioned part is not configured or not on disk."""


def cache_root() -> Path:
    configured = os.environ.get("MOCKACCEL_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "mock-accel"


def _env_file() -> dict[str, str]:
    path = cache_root() / "env.sh"
    if not path.is_file():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        if match := _EXPORT_RE.match(line.strip()):
            values[match.group(1)] = match.group(2)
    return values


def require(name: str) -> Path:
    """The existing path named by ``name``; raises PrerequisiteMissingError with a provisioning hint."""
    value = os.environ.get(name) or _env_file().get(name)
    hint = f"run tools/provision/all.sh (or {HINTS.get(name, 'tools/provision')}) and export {name}"
    if not value:
        raise PrerequisiteMissingError(f"{name} is not set and not in {cache_root() / 'env.sh'}: {hint}")
    path = Path(value)
    if not path.exists():
        raise PrerequisiteMissingError(f"{name}={value} does not exist: {hint}")
    return path


def server_env() -> dict[str, str]:
    """Environment for a vfio-server child process."""
    env = {
        "MOCKACCEL_LIBVFIO_USER_PREFIX": str(require("MOCKACCEL_LIBVFIO_USER_PREFIX")),
        "MOCKACCEL_CACHE": str(cache_root()),
    }
    if "HOME" in os.environ:
        env["HOME"] = os.environ["HOME"]
    return env
