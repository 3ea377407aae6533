"""A deliberately unfriendly gRPC client for the plugin's Unix sockets (tests only).

``call`` sends any bytes as one gRPC request (any length prefix, any body)
over HTTP/2 built with h2, and reports the status the server answered, or that
it dropped the connection. ``send_raw`` writes bytes to the socket below
HTTP/2. Only for sockets the test made itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass
from pathlib import Path

import h2.config
import h2.connection
import h2.events

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind: int, flags: int, stream: int, payload: bytes = b"", *, length: int | None = None) -> bytes:
    """One HTTP/2 frame; ``length`` may lie about the payload."""
    size = len(payload) if length is None else length
    return size.to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


@dataclass(frozen=True)
class Answer:
    status: int | None  # grpc-status; None when the server dropped the connection or did not answer
    message: str = ""
    dropped: bool = False
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return self.status == 0


async def call(
    socket_path: Path,
    method: str,
    payload: bytes,
    *,
    length: int | None = None,
    end_stream: bool = True,
    timeout: float = 10.0,
    raw: bytes | None = None,
) -> Answer:
    """One request with ``payload`` after a gRPC prefix announcing ``length`` (default: the true length).

    ``raw`` replaces prefix and payload with exactly these bytes (``b""``: a request with no message).
    """
    reader, writer = await asyncio.open_unix_connection(str(socket_path))
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding="utf-8", validate_inbound_headers=False)
    )
    try:
        async with asyncio.timeout(timeout):
            conn.initiate_connection()
            stream = conn.get_next_available_stream_id()
            conn.send_headers(
                stream,
                [
                    (":method", "POST"),
                    (":scheme", "http"),
                    (":path", method),
                    (":authority", "localhost"),
                    ("content-type", "application/grpc"),
                    ("te", "trailers"),
                ],
            )
            data = struct.pack(">?I", False, len(payload) if length is None else length) + payload
            if raw is not None:
                data = raw
                if not raw:
                    conn.send_data(stream, b"", end_stream=end_stream)
            status: int | None = None
            message = ""
            body = bytearray()
            ended = False
            while True:
                while data:
                    room = min(conn.local_flow_control_window(stream), conn.max_outbound_frame_size, len(data))
                    if room <= 0:
                        break
                    conn.send_data(stream, data[:room], end_stream=end_stream and room == len(data))
                    data = data[room:]
                writer.write(conn.data_to_send())
                await writer.drain()
                if ended:
                    return Answer(status, message, body=bytes(body))
                chunk = await reader.read(65536)
                if not chunk:
                    return Answer(status, message, dropped=True, body=bytes(body))
                for event in conn.receive_data(chunk):
                    if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                        headers = {_text(k): _text(v) for k, v in event.headers or ()}
                        if "grpc-status" in headers:
                            status = int(headers["grpc-status"])
                            message = headers.get("grpc-message", "")
                    elif isinstance(event, h2.events.DataReceived):
                        body += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                        ended = True
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        return Answer(status, message, dropped=True, body=bytes(body))
    except (ConnectionError, h2.exceptions.ProtocolError):
        return Answer(None, dropped=True)
    except TimeoutError:
        return Answer(None)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def send_raw(socket_path: Path, data: bytes, *, timeout: float = 5.0) -> bool:
    """Write ``data`` and read until the server closes or ``timeout``; True if the server closed."""
    reader, writer = await asyncio.open_unix_connection(str(socket_path))
    try:
        writer.write(data)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        try:
            async with asyncio.timeout(timeout):
                while await reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        return True
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
