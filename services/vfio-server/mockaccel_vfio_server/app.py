"""The vfio-server's lifecycle under the common service runner.

The libvfio-user device arrives with the vfio-server issue; the skeleton
only validates its settings and runs until stopped.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from mockaccel_common.logging import get_logger
from mockaccel_common.runner import run_service
from mockaccel_vfio_server.settings import Settings

log = get_logger("mockaccel_vfio_server")


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    async def start(stack: AsyncExitStack, group: asyncio.TaskGroup) -> None:
        log.info("server_configured", socket=settings.socket_path)

    await run_service("mockaccel_vfio_server", start, drain_timeout=settings.drain_timeout, stop=stop)
