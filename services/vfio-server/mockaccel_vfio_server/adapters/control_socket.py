"""The control API's transport: newline-delimited JSON over a Unix socket, on asyncio.

One JSON object per line in each direction, answered in order. A malformed
line gets an ``{"ok": false}`` reply rather than closing the connection, so a
person typing into ``socat`` sees what went wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from mockaccel_common.logging import get_logger
from mockaccel_vfio_server.adapters.socket_path import claim_socket_path

log = get_logger("mockaccel_vfio_server.domain.control")
MAX_LINE = 64 * 1024
Handler = Callable[[Any], dict[str, Any]]


async def _serve_client(handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while line := await reader.readline():
            try:
                reply = handler(json.loads(line))
            except json.JSONDecodeError as exc:
                reply = {"ok": False, "error": f"not JSON: {exc}"}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
    except (ConnectionError, asyncio.LimitOverrunError, ValueError) as exc:
        log.info("control_client_dropped", error=str(exc))
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def control_server(path: Path, handler: Handler) -> AsyncIterator[asyncio.Server]:
    """Listen on ``path`` while the context is open; the socket file is removed on exit."""
    await asyncio.to_thread(claim_socket_path, path)
    server = await asyncio.start_unix_server(
        lambda r, w: _serve_client(handler, r, w), path=str(path), limit=MAX_LINE
    )
    log.info("control_listening", path=str(path))
    try:
        yield server
    finally:
        server.close()
        path.unlink(missing_ok=True)
        await server.wait_closed()
