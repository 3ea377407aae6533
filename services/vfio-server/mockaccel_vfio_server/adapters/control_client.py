"""A blocking client of a vfio-server's control API: one JSON request line, one reply line.

Used by the ``mockaccel device`` command line (cli.py) and by tests; blocking
on purpose, since one request and one reply need no event loop.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from types import TracebackType
from typing import Any

DEFAULT_TIMEOUT_S = 10.0


class ControlClient:
    """A connection to one control socket; ``request`` sends one object and returns the reply."""

    def __init__(self, path: Path, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        self._sock.connect(str(path))
        self._file = self._sock.makefile("rwb")

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        self._file.write(json.dumps({"op": op, **fields}).encode() + b"\n")
        self._file.flush()
        line = self._file.readline()
        if not line:
            raise ConnectionError("the control socket closed without a reply")
        reply: dict[str, Any] = json.loads(line)
        return reply
