"""Test-only fault points: the process kills itself (SIGKILL) at a named step.

Crash-safety tests set ``MOCKACCEL_FAULT_POINT=prepare:after_sysfs`` (read by
settings.py only) and check that a restarted agent, called again as kubelet
would, ends in a consistent state. Production never sets it; an unknown name
is a settings error so a typo cannot silently disable a test.
"""

from __future__ import annotations

import os
import signal
import sys

from mockaccel_common.logging import get_logger

POINTS = (
    "prepare:after_claim_fetch",
    "prepare:after_first_device",
    "prepare:after_sysfs",
    "prepare:after_cdi",
    "prepare:after_checkpoint",
    "unprepare:after_first_device",
    "unprepare:after_sysfs",
    "unprepare:after_cdi",
    "unprepare:after_checkpoint",
)

log = get_logger("mockaccel_node_agent.adapters.faults")


class FaultPoints:
    def __init__(self, armed: str = "") -> None:
        if armed and armed not in POINTS:
            raise ValueError(f"unknown fault point {armed!r}; known: {', '.join(POINTS)}")
        self.armed = armed

    def hit(self, point: str) -> None:
        """Die like ``kill -9`` if ``point`` is armed; otherwise nothing."""
        if point not in POINTS:
            raise ValueError(f"unknown fault point {point!r}")
        if point != self.armed:
            return
        log.warning("fault_point_hit", point=point)
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
