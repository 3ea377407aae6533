"""Claims as kubelet names them, allocations as the API server records them, and
what preparing a claim on this node means.

The rules that decide which devices of an allocation are ours live here:
only results whose ``driver`` is this driver, request names without the
``/subrequest`` suffix, one entry per device even when several requests
share it, and the pool name this node publishes each device under.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mockaccel_node_agent.errors import (
    ClaimNotAllocatedError,
    ClaimReplacedError,
    DeviceUnavailableError,
    InvalidRequestError,
    NoDevicesError,
)

# kubelet sends the claims of one pod for one driver; far fewer than this.
MAX_CLAIMS_PER_REQUEST = 256
# Object UIDs are UUIDs (36 characters); anything printable up to this length is accepted.
MAX_UID_LENGTH = 128
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_UID = re.compile(r"[!-~]+")  # printable ASCII, no spaces


def is_dns_label(value: str) -> bool:
    """RFC 1123 label (namespaces): at most 63 of [a-z0-9-], alphanumeric at both ends."""
    return len(value) <= 63 and _DNS_LABEL.fullmatch(value) is not None


def is_dns_subdomain(value: str) -> bool:
    """RFC 1123 subdomain (ResourceClaim names): at most 253 characters of labels joined by dots."""
    return len(value) <= 253 and _DNS_SUBDOMAIN.fullmatch(value) is not None


def _show(value: str, limit: int = 64) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "…")


@dataclass(frozen=True)
class ClaimRef:
    """A claim as kubelet identifies it in NodePrepare/NodeUnprepare."""

    namespace: str
    uid: str
    name: str

    def validate(self) -> None:
        """Namespace and name must be what the API server accepts before they go into a URL path."""
        missing = [field for field in ("namespace", "uid", "name") if not getattr(self, field)]
        if missing:
            raise InvalidRequestError(f"claim {self.uid or '?'}: empty {', '.join(missing)}")
        if not is_dns_label(self.namespace):
            raise InvalidRequestError(f"claim {self.uid}: namespace {_show(self.namespace)} is not a DNS label")
        if not is_dns_subdomain(self.name):
            raise InvalidRequestError(f"claim {self.uid}: name {_show(self.name)} is not a DNS subdomain")


def check_request(refs: Sequence[ClaimRef]) -> None:
    """Every claim needs a UID that can be the key of the answer: non-empty, printable, short."""
    for ref in refs:
        if not ref.uid:
            raise InvalidRequestError("every claim needs a uid (the key of the answer)")
        if len(ref.uid) > MAX_UID_LENGTH or _UID.fullmatch(ref.uid) is None:
            raise InvalidRequestError(
                f"claim uid {_show(ref.uid)} is not printable ASCII of at most {MAX_UID_LENGTH} characters"
            )


@dataclass(frozen=True)
class AllocationResult:
    request: str
    driver: str
    pool: str
    device: str
    admin_access: bool = False  # DRAAdminAccess: the device may be in use by another claim


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
                    admin_access=r.get("adminAccess") is True,
                )
                for r in results
            ),
        )


@dataclass(frozen=True)
class WantedDevice:
    """A device of this driver that a claim needs, with the requests it serves.

    ``admin_access``: every result naming it has adminAccess (a monitoring claim);
    such a device is prepared without exclusivity and without its ALLOCATED bit.
    """

    pool: str
    device: str
    request_names: tuple[str, ...]
    admin_access: bool = False


@dataclass(frozen=True)
class PreparedDevice:
    pool: str
    device: str
    request_names: tuple[str, ...]
    cdi_device_ids: tuple[str, ...]
    admin_access: bool = False


@dataclass(frozen=True)
class PreparedClaim:
    """A claim this node has prepared: what unprepare needs, without the API server."""

    ref: ClaimRef
    devices: tuple[PreparedDevice, ...]
    cdi_spec: str

    @property
    def device_names(self) -> tuple[str, ...]:
        return tuple(d.device for d in self.devices)

    @property
    def exclusive_device_names(self) -> tuple[str, ...]:
        """The devices this claim holds alone (and marks ALLOCATED): all but admin-access ones."""
        return tuple(d.device for d in self.devices if not d.admin_access)


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
    admin: dict[tuple[str, str], bool] = {}
    for result in allocation.results:
        if result.driver != driver:
            continue
        key = (result.pool, result.device)
        if key not in requests:
            order.append(key)
            requests[key] = []
            admin[key] = True
        admin[key] = admin[key] and result.admin_access
        request = base_request(result.request)
        if request and request not in requests[key]:
            requests[key].append(request)
    if not order:
        raise NoDevicesError(f"the allocation has no device of driver {driver}")
    return tuple(
        WantedDevice(pool, device, tuple(requests[(pool, device)]), admin[(pool, device)]) for pool, device in order
    )


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
