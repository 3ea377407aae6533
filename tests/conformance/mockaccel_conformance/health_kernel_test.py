"""A health change from the device wakes poll(POLLPRI) on status and health (kernel only)."""

from __future__ import annotations

import select
import threading

import pytest

from mockaccel_conformance.target import GuestTarget


@pytest.mark.parametrize("attribute", ["health", "status"])
def test_health_change_wakes_poll(kernel: GuestTarget, attribute: str) -> None:
    name = kernel.node.pfs[3].name
    with open(kernel.dev_dir(name) / attribute, "rb", buffering=0) as handle:
        handle.read()
        poller = select.poll()
        poller.register(handle, select.POLLPRI | select.POLLERR)
        flip = threading.Timer(0.5, kernel.set_health, (name, False))
        flip.start()
        try:
            events = poller.poll(20_000)
        finally:
            flip.join()
            kernel.set_health(name, True)
    assert events, f"no POLLPRI on {attribute} within 20 s of a health change (sysfs_notify from the IRQ)"
    assert events[0][1] & select.POLLPRI
