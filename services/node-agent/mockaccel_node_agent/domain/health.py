"""Device-health lists for kubelet's NodeWatchResources stream.

Each list is complete (kubelet marks devices missing from it Unknown after a
timeout). A device's ``since`` time moves only when its health changes, so a
list rebuilt after an unrelated event (another device's status write) carries
the same times as before and compares equal.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mockaccel_common.model import Device, pool_name

MESSAGE_LIMIT = 1024


class Health(enum.Enum):
    UNKNOWN = 0
    HEALTHY = 1
    UNHEALTHY = 2


@dataclass(frozen=True)
class DeviceHealth:
    pool: str
    device: str
    health: Health
    since: int
    message: str = ""


def truncate(message: str) -> str:
    """kubelet's rule: at most 1024 characters, longer ones cut to 1021 + '...'."""
    return message if len(message) <= MESSAGE_LIMIT else message[: MESSAGE_LIMIT - 3] + "..."


def health_list(
    node: str,
    devices: Iterable[Device],
    previous: Mapping[str, DeviceHealth],
    now: int,
) -> tuple[DeviceHealth, ...]:
    """The complete list, sorted by device name; ``previous`` keeps unchanged devices' times."""
    out = []
    for device in sorted(devices, key=lambda d: d.name):
        health = Health.HEALTHY if device.healthy else Health.UNHEALTHY
        before = previous.get(device.name)
        since = before.since if before is not None and before.health is health else now
        status = f"0x{int(device.status):08x}"
        message = "" if health is Health.HEALTHY else truncate(f"{device.name} reports a fault (status {status})")
        out.append(DeviceHealth(pool_name(node, device.numa_node), device.name, health, since, message))
    return tuple(out)
