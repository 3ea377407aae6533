"""The checkpoint: which claims this node has prepared, and with which devices.

It is the agent's only memory. Unprepare works from it alone (the claim may be
deleted by then), start-up reconciliation makes sysfs and the CDI directory
match it, and it is the "last line of defense" against one device serving two
claims. The on-disk form is versioned JSON with a checksum over the canonical
encoding of its data, so a torn or hand-edited file is detected instead of
silently losing what is prepared.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mockaccel_node_agent.domain.claims import ClaimRef, PreparedClaim, PreparedDevice
from mockaccel_node_agent.errors import CheckpointCorruptError

KIND = "MockAccelNodeAgentCheckpoint"
VERSION = 1


@dataclass(frozen=True)
class Checkpoint:
    claims: Mapping[str, PreparedClaim] = field(default_factory=dict)

    def get(self, uid: str) -> PreparedClaim | None:
        return self.claims.get(uid)

    def with_claim(self, claim: PreparedClaim) -> Checkpoint:
        return Checkpoint({**self.claims, claim.ref.uid: claim})

    def without(self, uid: str) -> Checkpoint:
        return Checkpoint({k: v for k, v in self.claims.items() if k != uid})

    def holder_of(self, device: str) -> str | None:
        """The UID of the claim holding ``device`` exclusively, if any (admin-access claims hold nothing)."""
        for uid, claim in self.claims.items():
            if device in claim.exclusive_device_names:
                return uid
        return None

    def held_devices(self) -> dict[str, str]:
        """device name → claim UID for every exclusively held device (those marked ALLOCATED)."""
        return {device: uid for uid, claim in self.claims.items() for device in claim.exclusive_device_names}

    def cdi_specs(self) -> dict[str, str]:
        """CDI spec file name → claim UID."""
        return {claim.cdi_spec: uid for uid, claim in self.claims.items()}


def _claim_data(claim: PreparedClaim) -> dict[str, Any]:
    return {
        "namespace": claim.ref.namespace,
        "name": claim.ref.name,
        "cdiSpec": claim.cdi_spec,
        "devices": [_device_data(d) for d in claim.devices],
    }


def _device_data(device: PreparedDevice) -> dict[str, Any]:
    data: dict[str, Any] = {
        "pool": device.pool,
        "device": device.device,
        "requestNames": list(device.request_names),
        "cdiDeviceIds": list(device.cdi_device_ids),
    }
    if device.admin_access:  # only when set: checkpoints written before it verify unchanged
        data["adminAccess"] = True
    return data


def _canonical_text(data: object) -> str:
    """The one encoding the checksum covers: sorted keys, no whitespace (the C encoder)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _checksum_of(canonical: str) -> str:
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _checksum(data: Mapping[str, Any]) -> str:
    return _checksum_of(_canonical_text(data))


@functools.lru_cache(maxsize=256)  # above the pods of a node (110 by default)
def _claim_text(claim: PreparedClaim) -> str:
    # Claims are immutable and a checkpoint is rewritten whole on every change: each
    # claim is encoded once, not once per write for as long as it stays prepared.
    return _canonical_text(_claim_data(claim))


def encode(checkpoint: Checkpoint) -> bytes:
    """The canonical document: ``{"checksum","data","kind","version"}``, sorted keys, no whitespace.

    The data is assembled from each claim's canonical text, which is exactly
    what encoding the whole mapping with sorted keys gives (a property test
    holds the two equal), so the checksum is taken over the bytes written.
    """
    claims = ",".join(f"{json.dumps(uid)}:{_claim_text(c)}" for uid, c in sorted(checkpoint.claims.items()))
    data = f'{{"preparedClaims":{{{claims}}}}}'
    document = f'{{"checksum":"{_checksum_of(data)}","data":{data},"kind":{json.dumps(KIND)},"version":{VERSION}}}'
    return document.encode() + b"\n"


def decode(raw: bytes, *, path: str = "") -> Checkpoint:
    """Parse and verify; raises CheckpointCorruptError saying what is wrong."""

    def corrupt(why: str) -> CheckpointCorruptError:
        return CheckpointCorruptError(f"checkpoint {path or '(bytes)'} is corrupt: {why}", path=path)

    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise corrupt(f"not JSON ({exc})") from exc
    if not isinstance(document, dict) or document.get("kind") != KIND:
        raise corrupt(f"kind is not {KIND}")
    if document.get("version") != VERSION:
        raise corrupt(f"unsupported version {document.get('version')!r} (this agent reads {VERSION})")
    data = document.get("data")
    if not isinstance(data, dict):
        raise corrupt("no data")
    if document.get("checksum") != _checksum(data):
        raise corrupt("checksum mismatch")
    try:
        claims = {}
        for uid, entry in data["preparedClaims"].items():
            claims[uid] = PreparedClaim(
                ref=ClaimRef(namespace=str(entry["namespace"]), uid=str(uid), name=str(entry["name"])),
                cdi_spec=str(entry["cdiSpec"]),
                devices=tuple(
                    PreparedDevice(
                        pool=str(d["pool"]),
                        device=str(d["device"]),
                        request_names=tuple(str(r) for r in d["requestNames"]),
                        cdi_device_ids=tuple(str(i) for i in d["cdiDeviceIds"]),
                        admin_access=d.get("adminAccess") is True,
                    )
                    for d in entry["devices"]
                ),
            )
    except (KeyError, TypeError, AttributeError) as exc:
        raise corrupt(f"malformed entry ({exc!r})") from exc
    return Checkpoint(claims)
