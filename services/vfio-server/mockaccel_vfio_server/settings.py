"""Settings of the vfio-server: flags override environment variables, defaults live here only.

The command line keeps the original server's shape, ``mockaccel-vfio-server
[-v] [-u UUID] [-m SIZE] [--total-vfs N] SOCKET``: the short options and the
positional socket are rewritten into the long flags ``BaseSettings`` derives
from the fields, so env and flags stay one mechanism. Sizes and the UUID are
validated here, so a bad value stops the process at start-up with exit 2.

Default UUID: UUIDv5 of the socket's absolute path in a fixed namespace, so a
server restarted on the same socket keeps its identity (and two servers on
different sockets differ) without anyone inventing UUIDs.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self
from uuid import NAMESPACE_URL, UUID, uuid5

from mockaccel_common import regmap as rm
from mockaccel_common.errors import SettingsError
from mockaccel_common.provisioned import cache_root
from mockaccel_common.quantity import QuantityError, canonical_bytes, parse_quantity
from mockaccel_common.settings import BaseSettings, setting

# Namespace of default device UUIDs (uuid5(NAMESPACE_URL, "https://mock-accel.example.com/vfio-server")).
DEFAULT_UUID_NAMESPACE = uuid5(NAMESPACE_URL, "https://mock-accel.example.com/vfio-server")


@dataclass(frozen=True)
class Settings(BaseSettings):
    """mockaccel-vfio-server [-v] [-u UUID] [-m SIZE] [--total-vfs N] SOCKET: one emulated mock-accel PF."""

    socket_path: str = setting("", env="MOCKACCEL_SOCKET", help="vfio-user socket QEMU connects to (positional).")
    uuid: str = setting("", env="MOCKACCEL_UUID", help="Device UUID (-u); empty: derived from the socket path.")
    memory: str = setting(
        canonical_bytes(rm.DEFAULT_PF_MEMORY),
        env="MOCKACCEL_MEMORY",
        help="Device memory (-m), a Kubernetes quantity: 16Gi (16G is 16e9).",
        unit="bytes",
    )
    total_vfs: int = setting(4, env="MOCKACCEL_TOTAL_VFS", help=f"VFs the PF can enable, 0..{rm.MAX_VFS}.")
    vf_memory: str = setting(
        canonical_bytes(rm.DEFAULT_VF_MEMORY), env="MOCKACCEL_VF_MEMORY", help="Memory of each VF.", unit="bytes"
    )
    wordlist: Path | None = setting(
        None, env="MOCKACCEL_WORDLIST", help="Passphrase wordlist (7776 words); empty: no passphrase engine."
    )
    control_socket: Path | None = setting(
        None, env="MOCKACCEL_CONTROL_SOCKET", help="Unix socket of the control API; empty: no control API."
    )
    negotiation_timeout: float = setting(
        2.0,
        env="MOCKACCEL_NEGOTIATION_TIMEOUT",
        help="Longest vfio-user VERSION negotiation; a client slower than this is disconnected.",
        unit="s",
    )
    io_timeout: float = setting(
        1.0,
        env="MOCKACCEL_IO_TIMEOUT",
        help="Longest blocking read or write on a client connection; a client that stalls one is disconnected.",
        unit="s",
    )
    intx: bool = setting(
        True,
        env="MOCKACCEL_INTX",
        help="Offer a legacy INTx line (Interrupt Pin INTA#) next to MSI; false where the platform routes no "
        "INTx (QEMU behind pxb-pcie), so a guest without MSI polls instead of meeting an unrouted line.",
    )
    libvfio_user_prefix: Path | None = setting(
        None, env="MOCKACCEL_LIBVFIO_USER_PREFIX", help="Install prefix of libvfio-user (tools/provision)."
    )
    cache_dir: Path | None = setting(
        None,
        env="MOCKACCEL_CACHE",
        help="Cache root (compiled cffi binding); empty: ${XDG_CACHE_HOME:-~/.cache}/mock-accel.",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.socket_path:
            raise SettingsError("the vfio-user SOCKET path is required (positional, or env MOCKACCEL_SOCKET)")
        if self.uuid:
            try:
                UUID(self.uuid)
            except ValueError as exc:
                raise SettingsError(f"-u/--uuid is not a UUID: {self.uuid!r}") from exc
        for name in ("memory", "vf_memory"):
            try:
                parse_quantity(getattr(self, name))
            except QuantityError as exc:
                raise SettingsError(f"{name}: {exc}") from exc
        if not 0 <= self.total_vfs <= rm.MAX_VFS:
            raise SettingsError(f"--total-vfs must be 0..{rm.MAX_VFS}, got {self.total_vfs}")
        for name in ("negotiation_timeout", "io_timeout"):
            if not 0 < getattr(self, name) <= 60:
                raise SettingsError(f"{name} must be in (0, 60] seconds, got {getattr(self, name)}")
        if self.libvfio_user_prefix is None:
            raise SettingsError(
                "MOCKACCEL_LIBVFIO_USER_PREFIX is not set: run tools/provision/libvfio-user.sh and export "
                "the LIBVFIO_USER_PREFIX it prints (or pass --libvfio-user-prefix)"
            )

    # -- derived values --------------------------------------------------------

    @property
    def device_uuid(self) -> UUID:
        if self.uuid:
            return UUID(self.uuid)
        return uuid5(DEFAULT_UUID_NAMESPACE, str(Path(self.socket_path).absolute()))

    @property
    def memory_bytes(self) -> int:
        return parse_quantity(self.memory)

    @property
    def vf_memory_bytes(self) -> int:
        return parse_quantity(self.vf_memory)

    @property
    def cffi_cache_dir(self) -> Path:
        return (self.cache_dir or cache_root()) / "cffi"

    # -- the command line ------------------------------------------------------

    @classmethod
    def load(cls, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Self:
        return super().load(_long_form(sys.argv[1:] if argv is None else argv), environ)


def _long_form(argv: Sequence[str]) -> list[str]:
    """Rewrite ``-v``, ``-u``, ``-m`` and the positional SOCKET into BaseSettings' long flags.

    Every long flag is declared here too (taking one value), so that a flag's
    value is never mistaken for the positional socket path.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-h", "--help", action="store_true")
    parser.add_argument("-v", action="store_true")
    aliases = {"uuid": "-u", "memory": "-m"}
    for f in dataclasses.fields(Settings):
        flags = [aliases[f.name]] if f.name in aliases else []
        parser.add_argument(*flags, "--" + f.name.replace("_", "-"), dest=f.name)
    parser.add_argument("socket", nargs="?")
    known, rest = parser.parse_known_args(argv)
    out = list(rest)  # unknown arguments: BaseSettings' parser reports them
    if known.help:
        out.append("--help")
    if known.v:
        out += ["--log-level", "debug"]
    for f in dataclasses.fields(Settings):
        value = getattr(known, f.name)
        if value is not None:
            out += ["--" + f.name.replace("_", "-"), value]
    if known.socket is not None:
        out += ["--socket-path", known.socket]
    return out
