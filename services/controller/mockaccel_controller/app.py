"""The controller's lifecycle: discovery loop under the common service runner.

Publishing to the API server arrives with the controller issue; until then
the service discovers devices and reports what it found.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from mockaccel_common.logging import get_logger
from mockaccel_common.runner import run_service
from mockaccel_common.sysfs.reader import scan_devices
from mockaccel_controller.settings import Settings

log = get_logger("mockaccel_controller")


async def discovery_loop(settings: Settings) -> None:
    while True:
        result = await scan_devices(settings.sysfs_root)
        for skipped in result.skipped:
            log.warning("device_skipped", device=skipped.name, reason=skipped.reason)
        log.info("devices_discovered", node=settings.node_name, devices=len(result.devices))
        await asyncio.sleep(settings.resync_interval)


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    async def start(stack: AsyncExitStack, group: asyncio.TaskGroup) -> None:
        group.create_task(discovery_loop(settings), name="discovery")

    await run_service("mockaccel_controller", start, drain_timeout=settings.drain_timeout, stop=stop)
