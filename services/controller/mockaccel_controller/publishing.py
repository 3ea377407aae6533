"""One reconcile pass: read the changed devices, list stored slices, plan, apply the plan.

The publisher keeps the last reading of every device. A pass re-reads only
the devices its events named (a VF's PF with it, a PF's VFs with it, since
enabling VFs changes the PF's ``sriov_numvfs``); a full scan runs at start,
at the periodic resync and when an event source lost track (inotify queue
overflow, netlink ENOBUFS, the class directory appearing). On a 1,024-device
node this makes a change cost a few file reads instead of ~10,000.

The stored slices are listed from the API server at start, at every full
scan (resync) and whenever the slice watch saw a change that is not this
controller's own write (or is not running); otherwise a pass plans against
the last list with its own writes applied (the API server answers each write
with the object it stored). A stale view is therefore possible only in the
moment before the watch reports someone else's change, and then the write's
precondition fails. Listing a 1,024-device node's slices every pass was the
largest cost of a pass, on the controller and on the API server. The slice
watch starts at the version of the publisher's own list, so the view needs
no second list when the watch comes up.

The desired slices are kept by pool (``SliceBuilder``): a pass rebuilds and
plans only the pools whose devices it re-read and found changed, unless the
stored slices were listed in that pass (then someone else may have changed
any pool, and every pool is planned).

The pass is idempotent and restartable: a pass that fails half-way forgets
the stored view and is simply run again. Writes carry preconditions
(resourceVersion on updates, uid + resourceVersion on deletes), so a pass
planned against stale state fails with ConflictError instead of overwriting
someone else's change.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from mockaccel_common.model import Device, DeviceKind, DeviceName
from mockaccel_common.sysfs.reader import ScanResult, group_by_numa, read_devices, scan_devices
from mockaccel_controller.adapters.k8s import KubeApi, Owner
from mockaccel_controller.domain import reconcile
from mockaccel_controller.domain.reconcile import Create, Delete, Operation, Plan, StoredSlice, Update
from mockaccel_controller.domain.slices import SliceBuilder
from mockaccel_controller.settings import Settings

OWN_VERSIONS_KEPT = 512
WRITES_IN_FLIGHT = 4  # concurrent slice writes of one phase of a plan
T = TypeVar("T")


def merge_reads(current: Mapping[str, Device], scan: ScanResult, names: Collection[str] | None) -> dict[str, Device]:
    """The devices after re-reading ``names`` (None: a full scan, which replaces every reading).

    A failed read (EIO from a busy device, say) of one attribute must not drop
    the device from its slice: consumers would see it vanish and come back, so
    its last good reading is kept. A device that is gone (no class entry,
    missing directory or attribute) is dropped.
    """
    devices = {} if names is None else dict(current)
    for name in names or ():
        devices.pop(name, None)
    devices.update((d.name, d) for d in scan.devices)
    for skipped in scan.skipped:
        if skipped.transient and skipped.name in current:
            devices[skipped.name] = current[skipped.name]
    return devices


def affected(names: Iterable[str], current: Mapping[str, Device]) -> set[str]:
    """The devices to re-read for events naming ``names``: a VF's PF and a PF's known VFs too."""
    out = set(names)
    pfs = set()
    for name in names:
        try:
            parsed = DeviceName.parse(name)
        except ValueError:
            continue  # not a device name: read (and reported as skipped) like any other entry
        if parsed.kind is DeviceKind.VF:
            out.add(parsed.physfn)
        else:
            pfs.add(name)
    if pfs:
        out.update(d.name for d in current.values() if d.physfn in pfs)
    return out


async def _concurrently(items: Sequence[T], run: Callable[[T], Awaitable[None]], slots: asyncio.Semaphore) -> None:
    """``run`` each item, as many at a time as ``slots`` allows; the first failure cancels the rest and is raised."""
    if len(items) <= 1:
        for item in items:
            async with slots:
                await run(item)
        return

    async def one(item: T) -> None:
        async with slots:
            await run(item)

    try:
        async with asyncio.TaskGroup() as group:
            for item in items:
                group.create_task(one(item))
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None  # one pass failed: the caller retries it as a whole


class Publisher:
    def __init__(self, settings: Settings, api: KubeApi, log: Any) -> None:
        self._settings = settings
        self._api = api
        self._log = log
        self._skipped: dict[str, str] = {}  # reported: device -> why it is not published
        self._unreadable: dict[str, str] = {}  # device -> why its last read failed
        self._own_versions: deque[str] = deque(maxlen=OWN_VERSIONS_KEPT)
        self._own_deletes: deque[str] = deque(maxlen=OWN_VERSIONS_KEPT)
        self._writing = False  # a plan's writes are in flight
        self._write_slots = asyncio.Semaphore(WRITES_IN_FLIGHT)  # shared by the plans of one pass
        self._doubtful: list[tuple[str, str, str]] = []  # watch events seen while writing, judged after
        self.ready = False
        self._devices: dict[str, Device] | None = None  # the last good reading of each device; None: no scan yet
        self._builder = SliceBuilder(settings.node_name, settings.driver_name)  # desired slices, by pool
        self._dirty: set[str] = set()  # pools changed since the last plan that was carried out
        self._stored: dict[str, StoredSlice] | None = None  # the last list + own writes; None: list again
        self.list_version: str | None = None  # the resourceVersion of the list behind ``_stored``
        self.watching = False  # the slice watch runs: it calls forget_stored() on others' changes

    def forget_stored(self) -> None:
        """Someone else changed this node's slices (or nobody watches): the next pass lists them."""
        self._stored = None
        self.list_version = None

    async def _stored_slices(self, full: bool) -> tuple[list[StoredSlice], bool]:
        """The stored slices, and whether they were listed just now (rather than this controller's view)."""
        if full or self._stored is None or not self.watching:
            stored, version = await self._api.list_slices()
            self._stored = {s.name: s for s in stored}
            self.list_version = version or None
            return stored, True
        return list(self._stored.values()), False

    def is_own_write(self, kind: str, name: str, resource_version: str) -> bool:
        """Whether a watch event only echoes a write of this controller (so needs no pass)."""
        if kind == "DELETED":
            return name in self._own_deletes
        return resource_version in self._own_versions

    def someone_else_wrote(self, kind: str, name: str, resource_version: str) -> bool:
        """Judge a watch event: True when it is someone else's change (the view is forgotten; plan again).

        While this controller's writes are in flight, a write's echo can reach
        the watch before the write's own answer (which carries the version to
        recognise it by): such an event is judged when the writes are done
        (``take_foreign_change``), instead of being taken for someone else's
        and costing a full list of the node's slices after every change.
        """
        if self.is_own_write(kind, name, resource_version):
            return False
        if self._writing:
            self._doubtful.append((kind, name, resource_version))
            return False
        self.forget_stored()
        return True

    def take_foreign_change(self) -> bool:
        """Whether an event that came during the last writes was someone else's (the view is then forgotten)."""
        doubtful, self._doubtful = self._doubtful, []
        if any(not self.is_own_write(*event) for event in doubtful):
            self.forget_stored()
            return True
        return False

    async def ensure_discovered(self) -> None:
        if not self._api.version:
            version = await self._api.discover(self._settings.resource_api_version)
            self._log.info("api_discovered", group="resource.k8s.io", version=version)

    def _report_skipped(self, rejected: Iterable[tuple[str, str]]) -> None:
        """Log each device that cannot be published, once per distinct reason, and its recovery."""
        now = dict(self._unreadable)
        now.update(rejected)
        for name, reason in sorted(now.items()):
            if self._skipped.get(name) != reason:
                self._log.warning("device_skipped", device=name, reason=reason)
        for name in sorted(set(self._skipped) - set(now)):
            self._log.info("device_readable_again", device=name)
        self._skipped = now

    async def refresh(self, changed: Collection[str] | None) -> dict[str, Device]:
        """Re-read the ``changed`` devices (None, or no scan yet: every device); the devices now known.

        The readings go into the slice builder; the pools they change are
        remembered until a plan has been carried out for them.
        """
        current = self._devices
        if current is None or changed is None:
            scan = await scan_devices(self._settings.sysfs_root)
            self._devices = devices = merge_reads(current or {}, scan, None)
            self._unreadable = {s.name: s.reason for s in scan.skipped}
            self._dirty |= self._builder.replace(devices.values())
        elif changed:
            names = affected(changed, current)
            scan = await read_devices(self._settings.sysfs_root, names)
            self._devices = devices = merge_reads(current, scan, names)
            for name in names:
                self._unreadable.pop(name, None)
            self._unreadable.update((s.name, s.reason) for s in scan.skipped)
            self._dirty |= self._builder.update(
                (devices[n] for n in names if n in devices), [n for n in names if n not in devices]
            )
        return self._devices if self._devices is not None else {}

    async def reconcile(self, reasons: Iterable[str] = (), changed: Collection[str] | None = None) -> Plan:
        """One pass; ``changed`` names the devices to re-read (None: all, as at start and resync).

        Only the pools whose devices changed are planned, unless the stored
        slices were listed in this pass (someone else may have changed any of
        them): the other pools were equal to their stored slices after the
        last pass, and nothing but this controller has written since. The
        first pass publishes pool by pool as it reads (``_publish_by_pool``).
        """
        await self.ensure_discovered()
        if self._devices is None:
            plan = await self._publish_by_pool()
            desired = self._builder.state()
            self._report_skipped((r.name, r.reason) for r in desired.rejected)
        else:
            await self.refresh(changed)
            desired = self._builder.state()
            self._report_skipped((r.name, r.reason) for r in desired.rejected)
            stored, listed = await self._stored_slices(full=changed is None)
            plan = reconcile.plan(
                desired,
                stored,
                driver=self._settings.driver_name,
                node=self._settings.node_name,
                pools=None if listed else self._dirty,
            )
            if not plan.empty:
                try:
                    await self._apply(plan)
                except BaseException:
                    self.forget_stored()  # some writes may have happened: list again
                    raise
        self._dirty = set()
        self._log.info(
            "reconciled",
            reasons=sorted(reasons),
            read="all" if changed is None else len(changed),
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

    async def _publish_by_pool(self) -> Plan:
        """The first pass: a full scan whose pools are planned and written one NUMA node at a time.

        Every device is located first (its NUMA node, hence its pool, is known
        from two link reads and one ``numa_node`` per PCI function), then read
        one NUMA node after another; a pool's writes go out as soon as its
        devices are read, while the next NUMA node is read in the worker
        thread. On a 10,000-device node the full read and the API server's
        work on the 84 creates took turns on the two cores; now they overlap.
        The stored slices are listed meanwhile, before the first plan. The
        outcome is the plan of a plain full pass: pools are independent, the
        writes of each pool keep the plan's order, and the pools no longer
        desired are planned (deleted) last.
        """
        devices: dict[str, Device] = {}
        unreadable: dict[str, str] = {}
        operations: list[Operation] = []
        generations: dict[str, int] = {}
        planned: set[str] = set()
        owner: asyncio.Task[Owner] | None = None

        def apply(group: asyncio.TaskGroup, pools: Collection[str] | None) -> None:
            nonlocal owner
            assert self._stored is not None  # listed before the first plan
            plan = reconcile.plan(
                self._builder.state(),
                list(self._stored.values()),
                driver=self._settings.driver_name,
                node=self._settings.node_name,
                pools=pools,
            )
            operations.extend(plan.operations)
            generations.update(plan.generations)
            if plan.count(Create) and owner is None:
                owner = group.create_task(self._api.node_owner())
            if not plan.empty:
                group.create_task(self._apply(plan, owner))

        self._writing = True
        try:
            async with asyncio.TaskGroup() as group:
                listing = group.create_task(self._stored_slices(full=True))
                by_numa, unlocatable = await group_by_numa(self._settings.sysfs_root)
                unreadable.update((s.name, s.reason) for s in unlocatable)
                for numa in sorted(by_numa):
                    scan = await read_devices(self._settings.sysfs_root, by_numa.pop(numa))
                    devices.update((d.name, d) for d in scan.devices)
                    unreadable.update((s.name, s.reason) for s in scan.skipped)
                    pools = self._builder.update(scan.devices)
                    self._dirty |= pools
                    await listing
                    planned |= pools
                    apply(group, pools)
                await listing
                stored_pools = {s.pool for s in self._stored.values()} if self._stored is not None else set()
                apply(group, (stored_pools | self._builder.state().pools.keys()) - planned)
        except BaseExceptionGroup as failed:
            self.forget_stored()  # some writes may have happened: list again
            raise failed.exceptions[0] from None  # the pass is retried as a whole
        finally:
            self._writing = False
        self._devices = devices
        self._unreadable = unreadable
        return Plan(tuple(operations), generations)

    async def _apply(self, plan: Plan, owner_task: Awaitable[Owner] | None = None) -> None:
        """Updates, then creates, then deletes (the plan's order); the writes of one phase run concurrently.

        A phase's writes are independent (consumers trust a pool only once all
        ``resourceSliceCount`` slices of a generation are there), and sending
        them one at a time left the controller waiting for the API server's
        round trip 84 times in a row on a 10,000-device node. At most
        ``WRITES_IN_FLIGHT`` writes are in flight, across the plans of a pass.
        ``owner_task`` is the node's owner reference when the caller fetches it once for several plans.
        """
        owner: Owner | None = None
        if plan.count(Create):
            owner = await (owner_task if owner_task is not None else self._api.node_owner())
        stored = self._stored if self._stored is not None else {}

        async def write(op: Operation) -> None:
            if isinstance(op, Delete):
                self._own_deletes.append(op.target.name)
                await self._api.delete(op.target)
                stored.pop(op.target.name, None)
                self._log.info("slice_deleted", slice=op.target.name, pool=op.target.pool)
            elif isinstance(op, Update):
                written = await self._api.update(op.target, op.content)
                self._own_versions.append(written.resource_version)
                stored[written.name] = written
                self._log.info(
                    "slice_updated", slice=op.target.name, pool=op.content.pool, generation=op.content.generation
                )
            else:
                assert owner is not None  # planned creates fetched the owner above
                written = await self._api.create(op.content, owner)
                self._own_versions.append(written.resource_version)
                stored[written.name] = written
                self._log.info("slice_created", pool=op.content.pool, generation=op.content.generation)

        writing, self._writing = self._writing, True
        try:
            for kind in (Update, Create, Delete):
                await _concurrently([op for op in plan.operations if isinstance(op, kind)], write, self._write_slots)
        finally:
            self._writing = writing

    async def remove_all(self) -> int:
        """Delete every slice of this node and driver (``--remove-on-shutdown``)."""
        await self.ensure_discovered()
        stored, _ = await self._api.list_slices()
        for target in stored:
            await self._api.delete(target)
        self._log.info("slices_removed", count=len(stored))
        return len(stored)
