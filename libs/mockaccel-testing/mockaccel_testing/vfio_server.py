"""The vfio-server as a real process on short temporary socket paths (through service_process).

Why /tmp and not pytest's tmp_path: a Unix socket path must fit in 108 bytes,
and pytest's (or the Pants sandbox's) temporary folders can be longer.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mockaccel_common.provisioned import cache_root, require
from mockaccel_testing.service_process import ServiceProcess, python_env, service_process
from mockaccel_vfio_server.adapters.control_client import ControlClient

MODULE = "mockaccel_vfio_server"
TEST_UUID = "6d6f636b-2d61-4363-8565-6c2d30303031"
# The first start in a fresh cache compiles the cffi binding (about a second, more on a busy machine).
START_TIMEOUT_S = 90.0


def server_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of a vfio-server child: the provisioned library, the binding cache, our import path."""
    return python_env(
        {
            "MOCKACCEL_LIBVFIO_USER_PREFIX": str(require("MOCKACCEL_LIBVFIO_USER_PREFIX")),
            "MOCKACCEL_CACHE": str(cache_root()),
            **(extra or {}),
        }
    )


@contextmanager
def server_process(args: Sequence[str]) -> Iterator[ServiceProcess]:
    with service_process(MODULE, args, server_env()) as process:
        yield process


@dataclass
class RunningServer:
    process: ServiceProcess
    socket: Path
    control_socket: Path
    folder: Path

    def control(self, op: str, **fields: object) -> dict[str, Any]:
        with ControlClient(self.control_socket) as client:
            reply = client.request(op, **fields)
        assert reply["ok"], reply
        return reply


@contextmanager
def short_folder() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="mas-", dir="/tmp"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def server_args(folder: Path, extra: Sequence[str] = (), *, wordlist: bool = True) -> list[str]:
    args = ["-u", TEST_UUID, "--control-socket", str(folder / "ctl.sock"), *extra]
    if wordlist:
        args += ["--wordlist", str(require("MOCKACCEL_WORDLIST"))]
    return [*args, str(folder / "pf.sock")]


@contextmanager
def vfio_server(extra: Sequence[str] = (), *, wordlist: bool = True) -> Iterator[RunningServer]:
    """A started server, listening on its vfio-user and control sockets."""
    with short_folder() as folder, server_process(server_args(folder, extra, wordlist=wordlist)) as proc:
        proc.wait_for_event("server_listening", timeout=START_TIMEOUT_S)
        yield RunningServer(proc, folder / "pf.sock", folder / "ctl.sock", folder)
