from __future__ import annotations

import uuid
from typing import Any

import pytest

from mockaccel_common import regmap as rm
from mockaccel_vfio_server.domain.control import ControlApi
from mockaccel_vfio_server.domain.device import Device, Identity
from mockaccel_vfio_server.domain.faults import MAX_SLOW_MS, Faults

STATUS = rm.register("STATUS").offset


class Harness:
    def __init__(self) -> None:
        self.device = Device(Identity(uuid.UUID(int=1), 16 << 30, 2, 2 << 30), None)
        self.faults = Faults()
        self.changes = 0
        self.api = ControlApi(self.device, self.faults, changed=self._changed, server_state=lambda: {"x": 1})

    def _changed(self) -> None:
        self.changes += 1

    def __call__(self, **request: Any) -> dict[str, Any]:
        return self.api.handle(request)


@pytest.fixture
def api() -> Harness:
    return Harness()


def test_read_and_write_go_through_the_guest_decoder(api: Harness) -> None:
    assert api(op="read", offset=0, width=4) == {"ok": True, "value": rm.DEVICE_MAGIC}
    assert api(op="write", offset=STATUS, value=1) == {"ok": True}
    assert api(op="read", offset=STATUS) == {"ok": True, "value": 3}
    refused = api(op="write", offset=STATUS, value=4)
    assert refused["ok"] is False
    assert "ALLOCATED" in refused["error"]
    assert api.changes == 1


def test_health_changes_notify_and_report_the_irq_line(api: Harness) -> None:
    api(op="write", offset=rm.register("IRQ_ENABLE").offset, value=1)
    reply = api(op="health", function="pf", healthy=False)
    assert reply == {"ok": True, "changed": True, "irq_line": True}
    assert api(op="read", offset=STATUS)["value"] == 6
    assert api(op="health", function=1, healthy=False)["ok"] is True
    assert api(op="health", function=5, healthy=False)["ok"] is False
    assert api.changes == 3


def test_vfs_and_state(api: Harness) -> None:
    vfs = api(op="vfs")["vfs"]
    assert [v["index"] for v in vfs] == [0, 1]
    assert not vfs[0]["enabled"]
    state = api(op="state")["state"]
    assert state["registers"]["SRIOV_TOTAL_VFS"] == 2
    assert state["x"] == 1


def test_faults(api: Harness) -> None:
    assert api(op="fault", kind="fail_reads", enabled=True)["faults"]["fail_reads"] is True
    assert api(op="fault", kind="slow", delay_ms=50)["faults"]["slow_ms"] == 50
    assert api(op="fault", kind="slow", enabled=False)["faults"]["slow_ms"] == 0
    assert api(op="fault", kind="slow", delay_ms=MAX_SLOW_MS + 1)["ok"] is False
    assert api(op="fault", kind="melt")["ok"] is False
    assert api.changes == 3  # the server re-decides where reads are served after each fault change


@pytest.mark.parametrize(
    "request_",
    [[], {"op": "nope"}, {"op": "read"}, {"op": "read", "offset": "0"}, {"op": "write", "offset": True, "value": 1},
     {"op": "read", "offset": 0x1000}, {"op": "health", "function": "vf", "healthy": True}],
    ids=["not-object", "unknown-op", "missing-offset", "string-offset", "bool-offset", "out-of-range", "bad-function"],
)
def test_bad_requests_get_error_replies(api: Harness, request_: Any) -> None:
    reply = api.api.handle(request_)
    assert reply["ok"] is False
    assert reply["error"]
