"""Claims as kubelet names them, allocations as the API server records them, and
what preparing a claim on this node means.

The rules that decide which devices of an allocation are ours live here:
only results whose ``driver`` is this driver, request names without the
``/subrequest`` suffix, one entry per device even when several requests
share it, and the pool name this node publishes each device under.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mockaccel_node_agent.errors import (
    ClaimNotAllocatedError,
    ClaimReplacedError,
    DeviceUnavailableError,
    InvalidRequestError,
    NoDevicesError,
)


@dataclass(frozen=True)
class ClaimRef:
    """A claim as kubelet identifies it in NodePrepare/NodeUnprepare."""

    namespace: str
    uid: str
    name: str

    def validate(self) -> None:
        missing = [field for field in ("namespace", "uid", "name") if not getattr(self, field)]
        if missing:
            raise InvalidRequestError(f"claim {self.uid or '?'}: empty {', '.join(missing)}")


@dataclass(frozen=True)
class AllocationResult:
    request: str
    driver: str
    pool: str
    device: str


@dataclass(frozen=True)
class ClaimAllocation:
    """What the API server says about a claim: its UID and, if allocated, the results."""

    uid: str
    allocated: bool
    results: tuple[AllocationResult, ...] = ()

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> ClaimAllocation:
        """From a ResourceClaim as JSON (resource.k8s.io/v1)."""
        uid = str((obj.get("metadata") or {}).get("uid", ""))
        allocation = (obj.get("status") or {}).get("allocation")
        if not allocation:
            return cls(uid=uid, allocated=False)
        results = ((allocation.get("devices") or {}).get("results")) or []
        return cls(
            uid=uid,
            allocated=True,
            results=tuple(
                AllocationResult(
                    request=str(r.get("request", "")),
                    driver=str(r.get("driver", "")),
                    pool=str(r.get("pool", "")),
                    device=str(r.get("device", "")),
                )
                for r in results
            ),
        )


@dataclass(frozen=True)
class WantedDevice:
    """A device of this driver that a claim needs, with the requests it serves."""

    pool: str
    device: str
    request_names: tuple[str, ...]


@dataclass(frozen=True)
class PreparedDevice:
    pool: str
    device: str
    request_names: tuple[str, ...]
    cdi_device_ids: tuple[str, ...]


@dataclass(frozen=True)
class PreparedClaim:
    """A claim this node has prepared: what unprepare needs, without the API server."""

    ref: ClaimRef
    devices: tuple[PreparedDevice, ...]
    cdi_spec: str

    @property
    def device_names(self) -> tuple[str, ...]:
        return tuple(d.device for d in self.devices)


def base_request(name: str) -> str:
    """``gpu/large`` → ``gpu``: kubelet matches container requests by the parent request."""
    return name.split("/", 1)[0]


def check_allocation(ref: ClaimRef, allocation: ClaimAllocation) -> None:
    if allocation.uid != ref.uid:
        raise ClaimReplacedError(
            f"claim {ref.namespace}/{ref.name} has UID {allocation.uid}, not {ref.uid}: it was replaced"
        )
    if not allocation.allocated:
        raise ClaimNotAllocatedError(f"claim {ref.namespace}/{ref.name} is not allocated")


def wanted_devices(allocation: ClaimAllocation, driver: str) -> tuple[WantedDevice, ...]:
    """The devices of ``driver`` in the allocation, in result order, one entry per device."""
    order: list[tuple[str, str]] = []
    requests: dict[tuple[str, str], list[str]] = {}
    for result in allocation.results:
        if result.driver != driver:
            continue
        key = (result.pool, result.device)
        if key not in requests:
            order.append(key)
            requests[key] = []
        request = base_request(result.request)
        if request and request not in requests[key]:
            requests[key].append(request)
    if not order:
        raise NoDevicesError(f"the allocation has no device of driver {driver}")
    return tuple(WantedDevice(pool, device, tuple(requests[(pool, device)])) for pool, device in order)


def check_pool(device: str, pool: str, local_pool: str) -> None:
    if pool != local_pool:
        raise DeviceUnavailableError(
            f"device {device} of pool {pool} is not on this node (local device {device} is in pool {local_pool})"
        )


def dedupe(refs: Iterable[ClaimRef]) -> list[ClaimRef]:
    """Claims in request order, each UID once (kubelet never repeats one; a client might)."""
    seen: set[str] = set()
    unique = []
    for ref in refs:
        if ref.uid not in seen:
            seen.add(ref.uid)
            unique.append(ref)
    return unique
