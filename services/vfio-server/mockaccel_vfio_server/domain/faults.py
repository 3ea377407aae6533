"""Injected faults: what the control API can make the device do wrong on purpose.

Pure state; the BAR0 adapter consults it on every guest access. ``slow``
delays each guest access inside the synchronous region callback, which stalls
the guest's vCPU just like slow hardware would; QEMU gives up on a vfio-user
reply after 5 s (``x-msg-timeout``), so the delay is capped well below that.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any

from mockaccel_vfio_server.errors import ControlRequestError

MAX_SLOW_MS = 4000


class FaultKind(enum.StrEnum):
    FAIL_READS = "fail_reads"  # guest reads fail with EINVAL (the guest sees all-ones)
    FAIL_WRITES = "fail_writes"  # guest writes fail with EINVAL (dropped)
    SLOW = "slow"  # every guest access takes delay_ms longer


@dataclass
class Faults:
    fail_reads: bool = False
    fail_writes: bool = False
    slow_ms: int = 0

    def apply(self, kind: str, *, enabled: bool, delay_ms: int = 0) -> None:
        """Turn one fault on or off; raises ControlRequestError for unknown kinds or delays."""
        try:
            fault = FaultKind(kind)
        except ValueError as exc:
            kinds = ", ".join(k.value for k in FaultKind)
            raise ControlRequestError(f"unknown fault kind {kind!r} (one of {kinds})") from exc
        if fault is FaultKind.FAIL_READS:
            self.fail_reads = enabled
        elif fault is FaultKind.FAIL_WRITES:
            self.fail_writes = enabled
        else:
            if enabled and not 0 < delay_ms <= MAX_SLOW_MS:
                raise ControlRequestError(f"delay_ms must be 1..{MAX_SLOW_MS} (QEMU times out at 5000), got {delay_ms}")
            self.slow_ms = delay_ms if enabled else 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
