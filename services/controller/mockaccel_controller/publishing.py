"""One reconcile pass: scan sysfs, list stored slices, plan, apply the plan.

The pass is idempotent and restartable: everything it needs is re-read (the
devices from sysfs, the slices from the API server), so a pass that fails
half-way is simply run again. Writes carry preconditions (resourceVersion on
updates, uid + resourceVersion on deletes), so a pass planned against stale
state fails with ConflictError instead of overwriting someone else's change.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from mockaccel_common.model import Device
from mockaccel_common.sysfs.reader import ScanResult, scan_devices
from mockaccel_controller.adapters.k8s import KubeApi, Owner
from mockaccel_controller.domain import reconcile
from mockaccel_controller.domain.reconcile import Create, Delete, Plan, Update
from mockaccel_controller.domain.slices import desired_state
from mockaccel_controller.settings import Settings

OWN_VERSIONS_KEPT = 512


def with_last_good(scan: ScanResult, last_good: Mapping[str, Device]) -> tuple[Device, ...]:
    """The scanned devices, plus the last good reading of each device whose read failed transiently.

    A failed read (EIO from a busy device, say) of one attribute must not drop
    the device from its slice: consumers would see it vanish and come back.
    A device that is gone (missing directory or attribute) is dropped.
    """
    devices = {d.name: d for d in scan.devices}
    for skipped in scan.skipped:
        if skipped.transient and skipped.name in last_good:
            devices[skipped.name] = last_good[skipped.name]
    return tuple(devices[name] for name in sorted(devices))


class Publisher:
    def __init__(self, settings: Settings, api: KubeApi, log: Any) -> None:
        self._settings = settings
        self._api = api
        self._log = log
        self._skipped: dict[str, str] = {}
        self._own_versions: deque[str] = deque(maxlen=OWN_VERSIONS_KEPT)
        self._own_deletes: deque[str] = deque(maxlen=OWN_VERSIONS_KEPT)
        self.ready = False
        self._last_good: dict[str, Device] = {}

    def is_own_write(self, kind: str, name: str, resource_version: str) -> bool:
        """Whether a watch event only echoes a write of this controller (so needs no pass)."""
        if kind == "DELETED":
            return name in self._own_deletes
        return resource_version in self._own_versions

    async def ensure_discovered(self) -> None:
        if not self._api.version:
            version = await self._api.discover(self._settings.resource_api_version)
            self._log.info("api_discovered", group="resource.k8s.io", version=version)

    def _report_skipped(self, scan: ScanResult, rejected: Iterable[tuple[str, str]]) -> None:
        """Log each device that cannot be published, once per distinct reason, and its recovery."""
        now = {s.name: s.reason for s in scan.skipped}
        now.update(rejected)
        for name, reason in sorted(now.items()):
            if self._skipped.get(name) != reason:
                self._log.warning("device_skipped", device=name, reason=reason)
        for name in sorted(set(self._skipped) - set(now)):
            self._log.info("device_readable_again", device=name)
        self._skipped = now

    async def reconcile(self, reasons: Iterable[str] = ()) -> Plan:
        await self.ensure_discovered()
        scan = await scan_devices(self._settings.sysfs_root)
        devices = with_last_good(scan, self._last_good)
        self._last_good = {d.name: d for d in devices}
        desired = desired_state(self._settings.node_name, self._settings.driver_name, devices)
        self._report_skipped(scan, ((r.name, r.reason) for r in desired.rejected))
        stored, _ = await self._api.list_slices()
        plan = reconcile.plan(desired, stored, driver=self._settings.driver_name, node=self._settings.node_name)
        if not plan.empty:
            await self._apply(plan)
        self._log.info(
            "reconciled",
            reasons=sorted(reasons),
            devices=desired.device_count,
            pools=len(desired.pools),
            created=plan.count(Create),
            updated=plan.count(Update),
            deleted=plan.count(Delete),
            generations=dict(plan.generations),
        )
        if not self.ready:
            self.ready = True
            self._log.info("ready", devices=desired.device_count)
        return plan

    async def _apply(self, plan: Plan) -> None:
        owner: Owner | None = await self._api.node_owner() if plan.count(Create) else None
        for op in plan.operations:
            if isinstance(op, Delete):
                self._own_deletes.append(op.target.name)
                await self._api.delete(op.target)
                self._log.info("slice_deleted", slice=op.target.name, pool=op.target.pool)
            elif isinstance(op, Update):
                self._own_versions.append(await self._api.update(op.target, op.content))
                self._log.info(
                    "slice_updated", slice=op.target.name, pool=op.content.pool, generation=op.content.generation
                )
            else:
                assert owner is not None  # planned creates fetched the owner above
                self._own_versions.append(await self._api.create(op.content, owner))
                self._log.info("slice_created", pool=op.content.pool, generation=op.content.generation)

    async def remove_all(self) -> int:
        """Delete every slice of this node and driver (``--remove-on-shutdown``)."""
        await self.ensure_discovered()
        stored, _ = await self._api.list_slices()
        for target in stored:
            await self._api.delete(target)
        self._log.info("slices_removed", count=len(stored))
        return len(stored)
