"""Settings of the emulated node: the provisioned parts (from the environment) and the run's choices.

The environment names are the ones tools/provision/all.sh writes to
``$MOCKACCEL_CACHE/env.sh`` and pants.toml passes into tests. The Python root
file system and the 9p modules come from tools/provision/guest-rootfs.sh;
until their own variables exist in env.sh they are found through the
pointer file that script writes into the cache.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mockaccel_common.simulator.topology import NodeSpec

ROOTFS_POINTER = "guest-rootfs/current.env"


class PrerequisiteMissingError(Exception):
    """A provisioned part is missing; the message names the script that provides it."""


def _required(environ: Mapping[str, str], name: str, script: str) -> Path:
    value = environ.get(name, "")
    if not value or not Path(value).exists():
        raise PrerequisiteMissingError(
            f"{name} is {'unset' if not value else 'missing: ' + value}: run {script} "
            "(tools/provision/all.sh writes $MOCKACCEL_CACHE/env.sh; source it)"
        )
    return Path(value)


def _rootfs_pointer(environ: Mapping[str, str]) -> dict[str, str]:
    cache = environ.get("MOCKACCEL_CACHE") or str(Path.home() / ".cache" / "mock-accel")
    pointer = Path(cache) / ROOTFS_POINTER
    try:
        lines = pointer.read_text().splitlines()
    except OSError as exc:
        raise PrerequisiteMissingError(f"no {pointer}: run tools/provision/guest-rootfs.sh") from exc
    return dict(line.split("=", 1) for line in lines if "=" in line)


@dataclass(frozen=True)
class Provisioned:
    """Paths of the provisioned parts a node needs."""

    kernel: Path
    kdir: Path
    qemu: Path
    wordlist: Path
    libvfio_user_prefix: Path
    rootfs: Path
    modules_9p: tuple[Path, ...]
    cache: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Provisioned:
        env = os.environ if environ is None else environ
        # MOCKACCEL_GUEST_ROOTFS / MOCKACCEL_GUEST_9P_MODULES override the pointer file.
        paths = _rootfs_pointer(env)
        paths.update({k.removeprefix("MOCKACCEL_"): v for k, v in env.items() if k.startswith("MOCKACCEL_GUEST_")})
        rootfs = _required(paths, "GUEST_ROOTFS", "tools/provision/guest-rootfs.sh")
        mod_dir = _required(paths, "GUEST_9P_MODULES", "tools/provision/guest-rootfs.sh")
        order = (mod_dir / "order").read_text().split()
        return cls(
            kernel=_required(env, "MOCKACCEL_GUEST_KERNEL", "tools/provision/guest-kernel.sh"),
            kdir=_required(env, "MOCKACCEL_GUEST_KDIR", "tools/provision/guest-kernel.sh"),
            qemu=_required(env, "MOCKACCEL_QEMU", "tools/provision/qemu.sh"),
            wordlist=_required(env, "MOCKACCEL_WORDLIST", "tools/provision/wordlist.sh"),
            libvfio_user_prefix=_required(env, "MOCKACCEL_LIBVFIO_USER_PREFIX", "tools/provision/libvfio-user.sh"),
            rootfs=rootfs,
            modules_9p=tuple(mod_dir / name for name in order),
            cache=env.get("MOCKACCEL_CACHE", ""),
        )


@dataclass(frozen=True)
class NodeSettings:
    """One emulated node run."""

    node: NodeSpec
    run_dir: Path
    """Serial log, server logs, initramfs and QEMU command line of the run."""
    module: Path
    """The built mock-accel.ko."""
    provisioned: Provisioned
    share: Path | None = None
    """Host folder shared read-write into the guest (/mnt/share); enables the control bridge."""
    with_rootfs: bool = True
    """Share the Python root file system (chroot with ``in-rootfs``) into the guest."""
    run_script: Path | None = None
    """Shell script the guest runs after "devices ready"; without one the guest idles."""
    vfio_server_command: Sequence[str] = field(default_factory=lambda: [sys.executable, "-m", "mockaccel_vfio_server"])

    @property
    def kernel(self) -> Path:
        return self.provisioned.kernel

    @property
    def qemu(self) -> Path:
        return self.provisioned.qemu

    @property
    def wordlist(self) -> Path:
        return self.provisioned.wordlist

    @property
    def firmware(self) -> Path:
        return self.provisioned.wordlist

    @property
    def rootfs(self) -> Path | None:
        return self.provisioned.rootfs if self.with_rootfs else None

    @property
    def extra_modules(self) -> tuple[Path, ...]:
        return self.provisioned.modules_9p

    @property
    def server_env(self) -> dict[str, str]:
        """The vfio-servers run with this interpreter's import path and the provisioned library."""
        env = {
            "MOCKACCEL_LIBVFIO_USER_PREFIX": str(self.provisioned.libvfio_user_prefix),
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        }
        if self.provisioned.cache:
            env["MOCKACCEL_CACHE"] = self.provisioned.cache
        return env
