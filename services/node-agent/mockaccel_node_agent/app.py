"""The node agent's lifecycle under the common service runner.

The gRPC servers arrive with the node-agent issue; the skeleton prepares its
directories so start-up failures (an unwritable plugin dir) show up now.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from mockaccel_common.logging import get_logger
from mockaccel_common.runner import run_service
from mockaccel_node_agent.settings import Settings

log = get_logger("mockaccel_node_agent")


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    async def start(stack: AsyncExitStack, group: asyncio.TaskGroup) -> None:
        for directory in (settings.plugin_dir, settings.cdi_dir):
            await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        log.info("agent_ready", node=settings.node_name, plugin_dir=str(settings.plugin_dir))

    await run_service("mockaccel_node_agent", start, drain_timeout=settings.drain_timeout, stop=stop)
