"""Run an emulated node: vfio-servers first, then QEMU, then the servers stop after QEMU.

``EmulatedNode`` is a context manager. Entering starts one vfio-server per PF
of the topology node (waiting for both of its sockets), builds the
initramfs, starts QEMU and the guest-to-control-API bridge; leaving stops
QEMU (if it still runs), then the bridge, then the servers, in reverse
order, on every exit path. ``wait_ready`` returns the boot-to-ready time,
``wait_exit`` the guest's exit status.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from mockaccel_node.bridge import BridgeServer, control_request
from mockaccel_node.initramfs import EXIT_MARKER, HUNG_MARKER, READY_MARKER, InitramfsSpec, build_initramfs
from mockaccel_node.plan import ROOTFS_TAG, SHARE_TAG, NodePlan, plan_node, qemu_args, server_args
from mockaccel_node.settings import NodeSettings

_ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1bc|\r")


def serial_text(log: Path) -> str:
    """A guest's serial log without SeaBIOS' ANSI escapes and carriage returns."""
    return _ANSI.sub(b"", log.read_bytes()).decode(errors="replace")


# Kernel log lines that mean the kernel found a bug: any of them fails a run. Besides
# BUG/WARN/Oops, the debug kernel's checkers: KASAN, lockdep ("WARNING: possible circular
# locking…", "INFO: trying to register non-static key"), DEBUG_ATOMIC_SLEEP ("BUG: sleeping
# function…"), debugobjects ("ODEBUG:") and SLUB debugging ("BUG kmalloc-64 (Tainted): …").
KERNEL_PROBLEM = re.compile(
    r"(BUG:|WARNING:|Oops|general protection fault|Call Trace:|kernel BUG|UBSAN:|KASAN:|"
    r"list_add corruption|list_del corruption|refcount_t:|INFO: task .* blocked|"
    r"INFO: trying to register non-static key|INFO: lockdep is turned off|ODEBUG:|"
    r"BUG \S+ \((Not t|T)ainted|Kernel panic)"
)
SERVER_START_S = 90.0  # a cold cache compiles the cffi binding first
SERVER_STOP_S = 10.0


def hung_report(text: str, lines: int = 200) -> str:
    """The serial log from the first hung-task report on: the task, its locks, every blocked task."""
    start = text.find("blocked for more than")
    start = text.rfind("\n", 0, start) + 1 if start >= 0 else 0
    return "\n".join(text[start:].splitlines()[:lines])


class NodeError(Exception):
    """The node could not be brought up, or the guest failed."""


@dataclass
class _Server:
    name: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]


@dataclass
class EmulatedNode:
    settings: NodeSettings
    plan: NodePlan = field(init=False)
    serial_log: Path = field(init=False)
    started: float = 0.0
    _stack: ExitStack = field(default_factory=ExitStack)
    _servers: list[_Server] = field(default_factory=list)
    _qemu: subprocess.Popen[bytes] | None = None
    bridge: BridgeServer | None = None

    def __post_init__(self) -> None:
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        # Unix socket paths must stay under 108 bytes: sockets go to a short /tmp folder.
        self._socket_dir = Path(tempfile.mkdtemp(prefix="man-", dir="/tmp"))
        self.plan = plan_node(self.settings.node, self._socket_dir)
        self.serial_log = self.settings.run_dir / "serial.log"

    # -- lifecycle ------------------------------------------------------------

    def __enter__(self) -> EmulatedNode:
        try:
            self._stack.callback(self._remove_socket_dir)
            self._stack.callback(self._stop_servers)
            self._start_servers()
            if self.settings.share is not None:
                self.bridge = self._stack.enter_context(BridgeServer(self.settings.share, self._control_socket))
            self._stack.callback(self._stop_qemu)
            self._start_qemu()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _remove_socket_dir(self) -> None:
        for path in self._socket_dir.iterdir():
            path.unlink(missing_ok=True)
        self._socket_dir.rmdir()

    def _start_servers(self) -> None:
        env = {**os.environ, **self.settings.server_env}
        for pf in self.plan.pfs:
            log = (self.settings.run_dir / f"vfio-server-{pf.name}.log").open("wb")
            command = [*self.settings.vfio_server_command, *server_args(pf, self.settings.wordlist)]
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
            self._servers.append(_Server(pf.name, process, log))
        deadline = time.monotonic() + SERVER_START_S
        for pf, server in zip(self.plan.pfs, self._servers, strict=True):
            while not (pf.socket.exists() and pf.control_socket.exists()):
                if server.process.poll() is not None:
                    raise NodeError(f"vfio-server of {pf.name} exited {server.process.returncode}: {server.log.name}")
                if time.monotonic() > deadline:
                    raise NodeError(f"vfio-server of {pf.name} has no socket after {SERVER_START_S} s")
                time.sleep(0.05)

    def _stop_servers(self) -> None:
        for server in reversed(self._servers):
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
        for server in reversed(self._servers):
            try:
                server.process.wait(SERVER_STOP_S)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()
            server.log.close()

    def _start_qemu(self) -> None:
        s = self.settings
        initrd = build_initramfs(
            s.run_dir / "initrd.cpio.gz",
            InitramfsSpec(
                len(self.plan.pfs),
                [*s.extra_modules, s.module],
                s.firmware,
                s.run_script.read_text() if s.run_script else None,
            ),
        )
        shares: list[tuple[Path, str, bool]] = []
        if s.rootfs is not None:
            shares.append((s.rootfs, ROOTFS_TAG, True))
        if s.share is not None:
            shares.append((s.share, SHARE_TAG, False))
        args = qemu_args(
            self.plan,
            kernel=s.kernel,
            initrd=initrd,
            serial_log=self.serial_log,
            shares=shares,
            append=s.kernel_args,
            network=s.network,
        )
        self.serial_log.write_bytes(b"")
        (s.run_dir / "qemu.cmdline").write_text(" ".join([str(s.qemu), *args]) + "\n")
        self.started = time.monotonic()
        self._qemu = subprocess.Popen(
            [str(s.qemu), *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )

    def _stop_qemu(self) -> None:
        if self._qemu is None:
            return
        if self._qemu.poll() is None:
            self._qemu.terminate()
            try:
                self._qemu.wait(10)
            except subprocess.TimeoutExpired:
                self._qemu.kill()
                self._qemu.wait()
        if self._qemu.stdout is not None:
            (self.settings.run_dir / "qemu.out").write_bytes(self._qemu.stdout.read())
            self._qemu.stdout.close()

    # -- watching the guest ---------------------------------------------------

    def text(self) -> str:
        return serial_text(self.serial_log)

    def _wait_for(self, marker: str, timeout: float) -> str:
        assert self._qemu is not None
        deadline = self.started + timeout
        while True:
            text = self.text()
            if marker in text:
                return text
            if HUNG_MARKER in text:
                raise NodeError(f"the guest kernel reported a hung task before {marker!r}\n{hung_report(text)}")
            if self._qemu.poll() is not None:
                text = self.text()
                if marker in text:
                    return text
                raise NodeError(f"QEMU exited {self._qemu.returncode} before {marker!r}\n{self.tail(text)}")
            if time.monotonic() > deadline:
                raise NodeError(f"no {marker!r} within {timeout:.0f} s\n{self.tail(text)}")
            time.sleep(0.05)

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Seconds from QEMU's start until /sys/class/mock-accel listed every PF."""
        self._wait_for(READY_MARKER, timeout)
        return time.monotonic() - self.started

    def wait_exit(self, timeout: float) -> int:
        """The guest's exit status (MOCKACCEL_EXIT); QEMU has exited when this returns."""
        text = self._wait_for(EXIT_MARKER, timeout)
        assert self._qemu is not None
        self._qemu.wait(30)
        match = re.findall(rf"^{EXIT_MARKER}(\d+)", text, re.MULTILINE)
        if not match:
            raise NodeError(f"unreadable exit line\n{self.tail(text)}")
        return int(match[-1])

    def kernel_problems(self) -> list[str]:
        """Serial-log lines showing a kernel BUG, WARN, Oops or similar."""
        return [line for line in self.text().splitlines() if KERNEL_PROBLEM.search(line)]

    @staticmethod
    def tail(text: str, lines: int = 60) -> str:
        return "\n".join(text.splitlines()[-lines:])

    # -- the devices' side ------------------------------------------------------

    def _control_socket(self, pf_name: str) -> Path:
        return self.plan.pf(pf_name).control_socket

    def control(self, pf_name: str, request: Mapping[str, Any]) -> dict[str, Any]:
        return control_request(self._control_socket(pf_name), request)

    def server_exit_codes(self) -> Sequence[int | None]:
        return [s.process.poll() for s in self._servers]
