"""Start-up reconciliation: make sysfs and the CDI directory match the checkpoint.

The checkpoint is the truth (see preparing.py for why every crash leaves a
state that this repairs): devices marked allocated that no prepared claim
holds are freed, held devices that are not marked are marked, our CDI specs
of claims that are not prepared are deleted, and prepared claims whose spec is
missing or differs get it rewritten from sysfs. A checkpoint that does not
verify stops the agent (CheckpointCorruptError) and is left untouched: freeing
its devices would hand them to new pods while containers may still use them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from mockaccel_common.cdi import to_document
from mockaccel_common.logging import get_logger
from mockaccel_node_agent.adapters.host import Host
from mockaccel_node_agent.adapters.state import CheckpointStore, SerialLock
from mockaccel_node_agent.domain.cdi_building import DeviceSource, claim_spec
from mockaccel_node_agent.domain.checkpoint import Checkpoint
from mockaccel_node_agent.errors import DeviceUnavailableError

log = get_logger("mockaccel_node_agent.reconciling")


@dataclass
class Repairs:
    freed: list[str] = field(default_factory=list)
    marked: list[str] = field(default_factory=list)
    specs_deleted: list[str] = field(default_factory=list)
    specs_written: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


async def reconcile(host: Host, store: CheckpointStore, lock: SerialLock) -> tuple[Checkpoint, Repairs]:
    async with lock.held():
        checkpoint = await store.load()
        repairs = Repairs()
        held = checkpoint.held_devices()
        for device in await host.scan():
            want = device.name in held
            if device.allocated == want:
                continue
            try:
                await host.set_allocated(device.name, want)
            except DeviceUnavailableError as exc:
                # One broken device must not stop the agent: every other claim on the node
                # still needs prepare and unprepare. Prepare repairs a stray bit later.
                log.error("device_repair_failed", device=device.name, allocated=want, error=str(exc))
                repairs.failed.append(device.name)
                continue
            (repairs.marked if want else repairs.freed).append(device.name)
        wanted_specs = checkpoint.cdi_specs()
        for stale in sorted(await host.our_specs() - set(wanted_specs)):
            await host.delete_spec(stale)
            repairs.specs_deleted.append(stale)
        for uid, claim in checkpoint.claims.items():
            sources: list[DeviceSource] = []
            for prepared_device in claim.devices:
                name = prepared_device.device
                try:
                    source = await host.read(name)
                    sources.append(replace(source, admin_access=prepared_device.admin_access))
                except DeviceUnavailableError as exc:
                    log.warning("prepared_device_missing", claim_uid=uid, device=name, error=str(exc))
            if not sources:
                continue
            expected = to_document(claim_spec(uid, sources, host.layout))
            raw = await host.read_spec(claim.cdi_spec)
            try:
                current = json.loads(raw) if raw is not None else None
            except ValueError:
                current = None
            if current != expected:
                await host.write_spec(uid, sources)
                repairs.specs_written.append(claim.cdi_spec)
    log.info(
        "reconciled",
        prepared_claims=len(checkpoint.claims),
        freed=repairs.freed,
        marked=repairs.marked,
        specs_deleted=repairs.specs_deleted,
        specs_written=repairs.specs_written,
        failed=repairs.failed,
    )
    return checkpoint, repairs
