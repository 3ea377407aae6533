"""The current device-health list of this node and the subscribers waiting for the next one."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from mockaccel_common.logging import get_logger
from mockaccel_common.sysfs.watcher import SysfsWatcher
from mockaccel_node_agent.adapters.host import Host
from mockaccel_node_agent.adapters.metrics import Metrics
from mockaccel_node_agent.domain.health import DeviceHealth, health_list

log = get_logger("mockaccel_node_agent.health")

# Only ``health``: the driver notifies it when the UNHEALTHY bit flips (and the simulator replaces
# it only then), while ``status`` changes with every prepare and unprepare. Watching ``status``
# made each of our own ALLOCATED writes wake this loop for a full rescan of sysfs (issue #15).
WATCHED_ATTRIBUTES = ("health",)
RESCAN_INTERVAL_S = 30.0
INCOMPLETE_RETRY_S = 0.1
RESEND_INTERVAL_S = 10.0


class HealthFeed:
    def __init__(self, node: str, host: Host, metrics: Metrics, clock: Callable[[], float] = time.time) -> None:
        self.node = node
        self.host = host
        self.metrics = metrics
        self.clock = clock
        self.current: tuple[DeviceHealth, ...] = ()
        self.version = 0
        self._changed = asyncio.Condition()
        self.incomplete = False

    async def refresh(self) -> bool:
        """Re-read the devices; publish a new list if any device's health changed.

        ``incomplete`` records whether a listed device could not be read: a
        device that is still appearing (its attributes not all written yet).
        """
        previous = {d.device: d for d in self.current}
        scan = await self.host.scan_all()
        self.incomplete = bool(scan.skipped)
        updated = health_list(self.node, scan.devices, previous, int(self.clock()))
        if updated == self.current and self.version:
            return False
        async with self._changed:
            self.current = updated
            self.version += 1
            self._changed.notify_all()
        self.metrics.health_changes.inc()
        log.info(
            "health_list_changed",
            version=self.version,
            unhealthy=[d.device for d in updated if d.health.name == "UNHEALTHY"],
        )
        return True

    async def run(self, sysfs_root: Path, *, rescan_interval: float = RESCAN_INTERVAL_S) -> None:
        """Refresh on every ``health`` change, and every ``rescan_interval`` seconds, forever.

        The rescan finds devices that appeared or vanished on real sysfs, where
        inotify reports attribute notifications but not class devices. A device
        that was listed but not readable yet (still appearing: only its health
        file wakes this loop) is looked at again after
        ``INCOMPLETE_RETRY_S``, not after the whole rescan interval.
        """
        woken = asyncio.Event()
        watcher = SysfsWatcher(sysfs_root, lambda _reason, _devices: woken.set(), attributes=WATCHED_ATTRIBUTES)
        watcher.start()
        try:
            log.info("watching_attributes", devices=len(watcher.watched_devices))
            await self.refresh()
            while True:
                wait = INCOMPLETE_RETRY_S if self.incomplete else rescan_interval
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), wait)
                woken.clear()
                await self.refresh()
        finally:
            watcher.close()

    def _newer_than(self, version: int) -> Callable[[], bool]:
        return lambda: self.version != version

    async def subscribe(self, resend_interval: float = RESEND_INTERVAL_S) -> AsyncIterator[tuple[DeviceHealth, ...]]:
        """The current list at once, then every new one; a slow reader skips to the newest.

        When nothing changes for ``resend_interval`` seconds the current list is
        sent again: kubelet stamps each device with the time its last list
        arrived and reports it Unknown once that is older than the health
        timeout (pkg/kubelet/cm/dra/healthinfo.go, 30 s by default), so a
        change-only stream turns healthy devices Unknown.
        """
        seen = self.version
        self.metrics.health_watchers.inc()
        try:
            yield self.current
            while True:
                async with self._changed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait_for(self._newer_than(seen)), resend_interval)
                    seen = self.version
                    snapshot = self.current
                self.metrics.health_lists.inc()
                yield snapshot
        finally:
            self.metrics.health_watchers.dec()
