"""The control API's requests and replies (docs/abi.md §7), independent of the socket.

Why a separate module: the same requests serve people (the ``mockaccel`` CLI)
and tests, and their rules (validation, what a health change does) are
testable without a socket. Register reads and writes go through the device's
guest decoder, so a control write is refused exactly where a guest write
would be; injected faults apply to guest accesses only, so the control API
can still inspect a device whose guest reads fail.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mockaccel_common.logging import get_logger
from mockaccel_vfio_server.domain.device import WRITE_WIDTH, Device
from mockaccel_vfio_server.domain.faults import Faults
from mockaccel_vfio_server.errors import ControlRequestError, GuestError

log = get_logger("mockaccel_vfio_server.domain.control")
Reply = dict[str, Any]


def _field(request: Mapping[str, Any], name: str, kind: type, default: Any = ...) -> Any:
    value = request.get(name, default)
    if value is ...:
        raise ControlRequestError(f"missing field {name!r}")
    # bool is an int subclass: refuse true/false where a number is meant.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ControlRequestError(f"field {name!r} must be {kind.__name__}, got {value!r}")
    return value


class ControlApi:
    """Answers one request at a time; ``changed`` is called after every state change."""

    def __init__(
        self,
        device: Device,
        faults: Faults,
        *,
        changed: Callable[[], None],
        server_state: Callable[[], dict[str, Any]],
    ) -> None:
        self._device = device
        self._faults = faults
        self._changed = changed
        self._server_state = server_state
        self._ops: dict[str, Callable[[Mapping[str, Any]], Reply]] = {
            "read": self._read,
            "write": self._write,
            "vfs": self._vfs,
            "health": self._health,
            "fault": self._fault,
            "state": self._state,
        }

    def handle(self, request: Any) -> Reply:
        """The reply to ``request`` (a decoded JSON value); never raises for bad input."""
        try:
            if not isinstance(request, dict):
                raise ControlRequestError("a request is a JSON object")
            op = _field(request, "op", str)
            handler = self._ops.get(op)
            if handler is None:
                raise ControlRequestError(f"unknown op {op!r} (one of {', '.join(self._ops)})")
            return {"ok": True, **handler(request)}
        except (ControlRequestError, GuestError) as exc:
            return {"ok": False, "error": str(exc)}

    def _read(self, request: Mapping[str, Any]) -> Reply:
        offset = _field(request, "offset", int)
        width = _field(request, "width", int, 4)
        return {"value": self._device.read(offset, width)}

    def _write(self, request: Mapping[str, Any]) -> Reply:
        offset = _field(request, "offset", int)
        value = _field(request, "value", int)
        self._device.write(offset, WRITE_WIDTH, value)
        log.info("control_write", offset=offset, value=value)
        self._changed()
        return {}

    def _vfs(self, request: Mapping[str, Any]) -> Reply:
        return {"vfs": self._device.vfs()}

    def _health(self, request: Mapping[str, Any]) -> Reply:
        function = request.get("function", "pf")
        healthy = _field(request, "healthy", bool)
        if function == "pf":
            vf_index = None
        elif isinstance(function, int) and not isinstance(function, bool):
            vf_index = function
        else:
            raise ControlRequestError(f"function must be \"pf\" or a VF index, got {function!r}")
        try:
            changed = self._device.set_health(vf_index, healthy)
        except ValueError as exc:
            raise ControlRequestError(str(exc)) from exc
        log.info("health_set", function=function, healthy=healthy, changed=changed)
        self._changed()
        return {"changed": changed, "irq_line": self._device.irq_line}

    def _fault(self, request: Mapping[str, Any]) -> Reply:
        kind = _field(request, "kind", str)
        enabled = _field(request, "enabled", bool, True)
        delay_ms = _field(request, "delay_ms", int, 0)
        self._faults.apply(kind, enabled=enabled, delay_ms=delay_ms)
        log.info("fault_set", kind=kind, enabled=enabled, delay_ms=delay_ms)
        self._changed()
        return {"faults": self._faults.as_dict()}

    def _state(self, request: Mapping[str, Any]) -> Reply:
        return {"state": {**self._device.snapshot(), **self._server_state()}}
