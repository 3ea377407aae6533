"""A request channel from the guest to the vfio-servers' control APIs, over the 9p share.

Why: the conformance suite must check, inside the guest, that a status write
reached the device and that a health change made by the device reaches user
space. Both need the control API (docs/abi.md §7), whose sockets are on the
host. The guest writes ``bridge/<id>.req`` (atomically: temp file, rename)
naming a PF and one control request; the host answers with ``<id>.rep``.
Both sides are stdlib only, so this module runs unchanged in the guest.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

BRIDGE_DIR = "bridge"
POLL_S = 0.02


def _write_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)


class BridgeClient:
    """The guest side: ``request("mock0", {"op": "read", ...})`` returns the control API's reply."""

    _ids = itertools.count()

    def __init__(self, share: Path, timeout: float = 30.0) -> None:
        self.dir = share / BRIDGE_DIR
        self.timeout = timeout

    def request(self, pf: str, request: Mapping[str, Any]) -> dict[str, Any]:
        ident = f"{os.getpid()}-{threading.get_ident()}-{next(self._ids)}"
        reply_path = self.dir / f"{ident}.rep"
        _write_atomic(self.dir / f"{ident}.req", {"pf": pf, "request": dict(request)})
        deadline = time.monotonic() + self.timeout
        while not reply_path.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no bridge reply for {pf} {request} within {self.timeout} s")
            time.sleep(POLL_S)
        reply: dict[str, Any] = json.loads(reply_path.read_text())
        reply_path.unlink()
        return reply


def control_request(control_socket: Path, request: Mapping[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """One request on a vfio-server control socket (one JSON object per line)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(control_socket))
        with sock.makefile("rwb") as stream:
            stream.write(json.dumps(dict(request)).encode() + b"\n")
            stream.flush()
            line = stream.readline()
    if not line:
        raise ConnectionError(f"{control_socket} closed without a reply")
    reply: dict[str, Any] = json.loads(line)
    return reply


class BridgeServer:
    """The host side: a thread answering requests with ``resolve(pf)``'s control socket."""

    def __init__(self, share: Path, resolve: Callable[[str], Path]) -> None:
        self.dir = share / BRIDGE_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self._resolve = resolve
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="bridge", daemon=True)
        self.handled = 0

    def __enter__(self) -> BridgeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _serve(self) -> None:
        while not self._stop.wait(POLL_S):
            for path in sorted(self.dir.glob("*.req")):
                self._answer(path)

    def _answer(self, path: Path) -> None:
        try:
            message = json.loads(path.read_text())
            reply = control_request(self._resolve(str(message["pf"])), message["request"])
        except (OSError, ValueError, KeyError) as exc:
            reply = {"ok": False, "error": f"bridge: {exc}"}
        path.unlink(missing_ok=True)
        _write_atomic(path.with_suffix(".rep"), reply)
        self.handled += 1
