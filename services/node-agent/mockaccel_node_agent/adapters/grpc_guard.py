"""Bounds on what a local client can make the plugin's gRPC servers do.

The registration and DRA sockets are reachable by anything that can open a
file under /var/lib/kubelet, and grpclib (0.4) has no limits of its own: a gRPC
length prefix of 2 GiB is read and buffered as announced, h2 buffers a whole
frame before it compares its length with SETTINGS_MAX_FRAME_SIZE (so a frame
header announcing 16 MiB costs 16 MiB per connection), and betterproto parses
truncated or malformed protobuf leniently (a truncated string becomes a shorter
one, a group tag becomes ``None``) or raises errors that grpclib answers with
UNKNOWN and a logged traceback. Three guards fix that:

* ``ConnectionGuard`` reads the HTTP/2 frame headers of every connection as the
  bytes arrive, before h2 buffers them, and drops the connection when a frame
  is longer than the 16 KiB every peer must accept, when one stream carries
  more than a request may, or when the requests still arriving on it add up to
  more than a connection may hold.
* ``StrictCodec`` checks the protobuf wire format against the request's schema
  (every length within its message, no groups, valid UTF-8 in strings) before
  betterproto sees it, and answers INVALID_ARGUMENT with one warning line.
* ``clip`` keeps client-supplied strings out of trailers and logs beyond a few
  hundred characters (HPACK-encoding a 1 MiB grpc-message trailer is
  quadratic and runs on the event loop).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, cast

import betterproto
from grpclib.config import Configuration
from grpclib.const import Handler, Status
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import GRPCError
from grpclib.server import Server

from mockaccel_common.logging import get_logger

log = get_logger("mockaccel_node_agent.grpc_guard")

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_FRAME_HEADER = 9
_DATA, _HEADERS, _RST_STREAM, _CONTINUATION = 0x0, 0x1, 0x3, 0x9
_END_STREAM = 0x1
# Headers of one request (h2 bounds the decoded list at 64 KiB; this bounds the encoded frames).
_HEADER_ALLOWANCE = 64 * 1024
CLIP = 256


def clip(text: str, limit: int = CLIP) -> str:
    """At most ``limit`` characters of a client-supplied string, marked when cut."""
    return text if len(text) <= limit else f"{text[:limit]}…(+{len(text) - limit} chars)"


@dataclass(frozen=True)
class Limits:
    """What one client may make a plugin socket hold."""

    max_message_bytes: int = 256 * 1024
    max_frame_bytes: int = 16 * 1024  # HTTP/2's default SETTINGS_MAX_FRAME_SIZE, which h2 advertises
    max_open_streams: int = 16
    max_connection_bytes: int = 1024 * 1024

    @property
    def max_stream_bytes(self) -> int:
        return self.max_message_bytes + 5 + _HEADER_ALLOWANCE


class ConnectionGuard:
    """An incremental reader of HTTP/2 frame headers; ``feed`` says why to drop the connection, or None."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._preface_left = len(_PREFACE)
        self._header = bytearray()
        self._body_left = 0
        self._open: dict[int, int] = {}  # stream → bytes received while its request is still arriving

    def feed(self, data: bytes) -> str | None:
        view = memoryview(data)
        if self._preface_left:
            taken = min(self._preface_left, len(view))
            self._preface_left -= taken
            view = view[taken:]
        while view:
            if self._body_left:
                taken = min(self._body_left, len(view))
                self._body_left -= taken
                view = view[taken:]
                continue
            need = _FRAME_HEADER - len(self._header)
            self._header += view[:need]
            view = view[need:]
            if len(self._header) < _FRAME_HEADER:
                return None
            problem = self._frame(bytes(self._header))
            self._header.clear()
            if problem:
                return problem
        return None

    def _frame(self, header: bytes) -> str | None:
        length = int.from_bytes(header[0:3], "big")
        kind, flags = header[3], header[4]
        stream = int.from_bytes(header[5:9], "big") & 0x7FFF_FFFF
        self._body_left = length
        if length > self._limits.max_frame_bytes:
            return "frame_too_large"
        if stream == 0:
            return None
        if kind == _RST_STREAM:
            self._open.pop(stream, None)
            return None
        if kind not in (_DATA, _HEADERS, _CONTINUATION):
            return None
        if kind == _HEADERS and stream not in self._open:
            if len(self._open) >= self._limits.max_open_streams:
                return "too_many_streams"
            self._open[stream] = 0
        if stream in self._open:
            self._open[stream] += length
            if self._open[stream] > self._limits.max_stream_bytes:
                return "message_too_large"
            if sum(self._open.values()) > self._limits.max_connection_bytes:
                return "connection_buffer_full"
            if kind in (_DATA, _HEADERS) and flags & _END_STREAM:
                del self._open[stream]
        return None


class _GuardedProtocol(asyncio.Protocol):
    """grpclib's H2Protocol behind a ConnectionGuard: bytes reach h2 only while the guard allows."""

    def __init__(self, inner: asyncio.Protocol, limits: Limits, on_reject: Callable[[str], None]) -> None:
        self._inner = inner
        self._guard = ConnectionGuard(limits)
        self._on_reject = on_reject
        self._transport: asyncio.Transport | None = None
        self._rejected = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return
        problem = self._guard.feed(data)
        if problem is None:
            self._inner.data_received(data)
            return
        self._rejected = True
        self._on_reject(problem)
        log.warning("grpc_connection_dropped", reason=problem)
        if self._transport is not None:
            self._transport.abort()

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)


# --- protobuf wire format ------------------------------------------------------


_LENGTH_DELIMITED = (betterproto.TYPE_STRING, betterproto.TYPE_BYTES, betterproto.TYPE_MESSAGE, betterproto.TYPE_MAP)


class MalformedMessageError(ValueError):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    for index in range(pos, min(pos + 10, len(data))):
        byte = data[index]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, index + 1
        shift += 7
    raise MalformedMessageError("truncated or overlong varint")


def _schema(message_type: type[Any]) -> dict[int, tuple[str, type[Any] | None]]:
    """field number → (proto type, message class for message fields)."""
    out: dict[int, tuple[str, type[Any] | None]] = {}
    cls_by_field = message_type._betterproto.cls_by_field  # (betterproto's field table)
    for field in dataclasses.fields(message_type):
        meta = betterproto.FieldMetadata.get(field)
        nested = cls_by_field.get(field.name) if meta.proto_type == betterproto.TYPE_MESSAGE else None
        out[meta.number] = (meta.proto_type, nested)
    return out


def check_wire(data: bytes, message_type: type[Any]) -> None:
    """Raise MalformedMessageError unless ``data`` is a well-formed encoding of ``message_type``.

    Known message fields are checked recursively and known string fields for
    UTF-8; unknown fields only for their framing. The schemas of the plugin's
    requests have no recursion, so depth is bounded by them.
    """
    schema = _schema(message_type)
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise MalformedMessageError("field number 0")
        proto_type, nested = schema.get(number, ("", None))
        if proto_type in _LENGTH_DELIMITED and wire != 2:
            raise MalformedMessageError(f"field {number} ({proto_type}) has wire type {wire}")
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if pos > len(data):
                raise MalformedMessageError(f"truncated fixed-width field {number}")
        elif wire == 2:
            length, pos = _varint(data, pos)
            end = pos + length
            if end > len(data):
                raise MalformedMessageError(f"field {number} claims {length} bytes, {len(data) - pos} left")
            if nested is not None:
                check_wire(data[pos:end], nested)
            elif proto_type == betterproto.TYPE_STRING:
                try:
                    data[pos:end].decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise MalformedMessageError(f"field {number} is not UTF-8") from exc
            pos = end
        else:
            raise MalformedMessageError(f"wire type {wire} of field {number} is not allowed")


class StrictCodec(ProtoCodec):
    """ProtoCodec that answers malformed requests with INVALID_ARGUMENT instead of UNKNOWN."""

    def __init__(self, on_reject: Callable[[str], None]) -> None:
        self._on_reject = on_reject

    def decode(self, data: bytes, message_type: Any) -> Any:
        try:
            check_wire(data, message_type)
            return super().decode(data, message_type)
        except Exception as exc:  # betterproto raises anything from ValueError to IndexError
            self._on_reject("malformed_message")
            log.warning("grpc_request_malformed", message_type=message_type.__name__, error=clip(str(exc)))
            raise GRPCError(Status.INVALID_ARGUMENT, f"malformed {message_type.__name__}: {clip(str(exc))}") from exc


class _RequestRead:
    """A server stream whose request was already read (and checked) by ``_guard_handler``."""

    def __init__(self, stream: Any, request: Any) -> None:
        self._stream = stream
        self._request = request

    async def recv_message(self) -> Any:
        return self._request

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _guard_handler(func: Callable[[Any], Any], on_reject: Callable[[str], None]) -> Callable[[Any], Any]:
    """Read the single request before the generated handler does, so a bad gRPC frame is INVALID_ARGUMENT.

    grpclib answers a compressed flag (NotImplementedError), a length prefix
    longer than the data sent (AssertionError) and a missing message (the
    handler gets None) with UNKNOWN and a traceback.
    """

    async def guarded(stream: Any) -> None:
        try:
            request = await stream.recv_message()
        except (AssertionError, NotImplementedError) as exc:
            on_reject("bad_grpc_frame")
            log.warning("grpc_request_malformed", error=clip(str(exc) or type(exc).__name__))
            raise GRPCError(Status.INVALID_ARGUMENT, "malformed gRPC message frame") from exc
        if request is None:
            on_reject("no_message")
            raise GRPCError(Status.INVALID_ARGUMENT, "the request carries no message")
        await func(_RequestRead(stream, request))

    return guarded


class _GuardedHandlers:
    """Every method of ``inner`` (all take one request message) behind ``_guard_handler``."""

    def __init__(self, inner: Any, on_reject: Callable[[str], None]) -> None:
        self._inner = inner
        self._on_reject = on_reject

    def __mapping__(self) -> dict[str, Handler]:
        return {
            path: Handler(_guard_handler(h.func, self._on_reject), h.cardinality, h.request_type, h.reply_type)
            for path, h in self._inner.__mapping__().items()
        }


class GuardedServer(Server):
    """A grpclib Server whose connections pass a ConnectionGuard and whose requests a StrictCodec."""

    def __init__(
        self,
        handlers: Collection[Any],
        *,
        limits: Limits | None = None,
        on_reject: Callable[[str], None] = lambda _reason: None,
    ) -> None:
        self._limits = limits or Limits()
        self._on_reject = on_reject
        window = max(64 * 1024, self._limits.max_stream_bytes)
        super().__init__(
            [_GuardedHandlers(handler, on_reject) for handler in handlers],
            codec=StrictCodec(on_reject),
            config=Configuration(http2_connection_window_size=window, http2_stream_window_size=window),
        )

    def _protocol_factory(self) -> asyncio.Protocol:  # type: ignore[override]
        # grpclib has no hook for connection limits; this wraps the protocol it builds.
        return _GuardedProtocol(super()._protocol_factory(), self._limits, self._on_reject)
