"""Health comes from the device: a fault shows in status and health."""

from __future__ import annotations

import pytest

from mockaccel_common.regmap import Status
from mockaccel_conformance.target import Target


@pytest.mark.parametrize("vf", [False, True], ids=["pf", "vf"])
def test_fault_and_recovery(target: Target, vf: bool) -> None:
    pf = target.node.pfs[2].name
    name = pf
    if vf:
        target.write(pf, "sriov_numvfs", "2")
        name = f"{pf}v1"
    target.set_health(name, False)
    try:
        target.eventually(lambda: target.read(name, "health") == "unhealthy\n", f"{name} unhealthy")
        assert target.read(name, "status") == "0x00000006\n"
        target.write(name, "status", "1")
        assert target.read(name, "status") == "0x00000007\n"
        assert target.device_status(name) == Status.READY | Status.ALLOCATED | Status.UNHEALTHY
    finally:
        target.set_health(name, True)
    target.eventually(lambda: target.read(name, "health") == "healthy\n", f"{name} healthy again")
    assert target.read(name, "status") == "0x00000003\n"
