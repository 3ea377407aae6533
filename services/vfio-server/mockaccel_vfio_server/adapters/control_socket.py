"""The control API's transport: newline-delimited JSON over a Unix socket, on asyncio.

One JSON object per line in each direction, answered in order. A malformed
line gets an ``{"ok": false}`` reply rather than closing the connection, so a
person typing into ``socat`` sees what went wrong. Two inputs end the
connection after that reply: a line longer than ``MAX_LINE`` (the stream
cannot be resynchronised cheaply) and end of input. JSON nested too deeply for
the decoder (``RecursionError``) is a malformed line like any other.

The socket is bound by us, not by asyncio, so that it is created with mode
0600 and the path is claimed (``SocketClaim``) for the server's lifetime.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from mockaccel_common.logging import get_logger
from mockaccel_vfio_server.adapters.socket_path import claim_socket_path, make_private, private_umask

log = get_logger("mockaccel_vfio_server.domain.control")
MAX_LINE = 64 * 1024
Handler = Callable[[Any], dict[str, Any]]


def _reply_to(handler: Handler, line: bytes) -> dict[str, Any]:
    try:
        request = json.loads(line)
    except json.JSONDecodeError as exc:
        return {"ok": False, "error": f"not JSON: {exc}"}
    except RecursionError:
        return {"ok": False, "error": "not JSON: nested too deeply"}
    except UnicodeDecodeError as exc:
        return {"ok": False, "error": f"not UTF-8: {exc.reason}"}
    return handler(request)


async def _serve_client(handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial.strip():
                    writer.write(json.dumps(_reply_to(handler, exc.partial)).encode() + b"\n")
                    await writer.drain()
                break
            except asyncio.LimitOverrunError:
                reply = {"ok": False, "error": f"line longer than {MAX_LINE} bytes"}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
                log.info("control_client_dropped", reason="line too long", limit=MAX_LINE)
                break
            writer.write(json.dumps(_reply_to(handler, line)).encode() + b"\n")
            await writer.drain()
    except ConnectionError as exc:
        log.info("control_client_dropped", reason=str(exc))
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def control_server(path: Path, handler: Handler) -> AsyncIterator[asyncio.Server]:
    """Listen on ``path`` while the context is open; the socket file is removed on exit."""
    claim = await asyncio.to_thread(claim_socket_path, path)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with private_umask():
                sock.bind(str(path))
            make_private(path)
        except BaseException:
            sock.close()
            raise
        server = await asyncio.start_unix_server(lambda r, w: _serve_client(handler, r, w), sock=sock, limit=MAX_LINE)
    except BaseException:
        claim.release()
        raise
    log.info("control_listening", path=str(path))
    try:
        yield server
    finally:
        server.close()
        claim.release()
        await server.wait_closed()
