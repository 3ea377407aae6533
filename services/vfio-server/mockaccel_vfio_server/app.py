"""The vfio-server's lifecycle under the common service runner.

Start-up order matters for the exit paths: the vfio-user context (which owns
the socket file) and the control socket are entered on the AsyncExitStack, so
they close after the TaskGroup has cancelled the serving task, in reverse
order, on every exit: SIGTERM, SIGINT, a fatal libvfio-user error or a failed
start. Blocking start-up work (reading the wordlist, compiling the cffi
binding on first use, probing a leftover socket) runs in a thread.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from pathlib import Path

from mockaccel_common.logging import get_logger
from mockaccel_common.passphrase import Wordlist
from mockaccel_common.runner import run_service
from mockaccel_vfio_server.adapters.control_socket import control_server
from mockaccel_vfio_server.adapters.libvfio_user import VfuContext, load_binding
from mockaccel_vfio_server.adapters.socket_path import claim_socket_path
from mockaccel_vfio_server.adapters.wordlist_file import read_wordlist
from mockaccel_vfio_server.domain.control import ControlApi
from mockaccel_vfio_server.domain.device import Device, Identity
from mockaccel_vfio_server.domain.faults import Faults
from mockaccel_vfio_server.server import Limits, VfioServer
from mockaccel_vfio_server.settings import Settings

log = get_logger("mockaccel_vfio_server")


async def _load_wordlist(settings: Settings) -> Wordlist | None:
    if settings.wordlist is None:
        log.warning("wordlist_not_configured", effect="passphrase engine reports errors")
        return None
    wordlist = await read_wordlist(settings.wordlist)
    log.info("wordlist_loaded", path=str(settings.wordlist), words=len(wordlist.words))
    return wordlist


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    async def start(stack: AsyncExitStack, group: asyncio.TaskGroup) -> None:
        identity = Identity(
            uuid=settings.device_uuid,
            memory_size=settings.memory_bytes,
            total_vfs=settings.total_vfs,
            vf_memory_size=settings.vf_memory_bytes,
        )
        device = Device(identity, await _load_wordlist(settings))
        faults = Faults()
        assert settings.libvfio_user_prefix is not None  # checked by Settings
        binding = await asyncio.to_thread(load_binding, settings.libvfio_user_prefix, settings.cffi_cache_dir)
        socket_path = Path(settings.socket_path)
        stack.enter_context(await asyncio.to_thread(claim_socket_path, socket_path))
        vfu_level = logging.DEBUG if settings.log_level == "debug" else logging.INFO
        vfu = stack.enter_context(VfuContext(binding, socket_path, log_level=vfu_level))
        limits = Limits(negotiation_timeout=settings.negotiation_timeout, io_timeout=settings.io_timeout)
        server = VfioServer(vfu, device, faults, limits=limits, intx=settings.intx)
        server.describe()
        log.info(
            "device_configured",
            socket=str(socket_path),
            uuid=str(identity.uuid),
            memory_size=identity.memory_size,
            total_vfs=identity.total_vfs,
            capabilities=int(device.capabilities),
        )
        if settings.control_socket is not None:
            api = ControlApi(device, faults, changed=server.device_changed, server_state=server.state)
            # The requests run under the device lock: the guest's callbacks run in the serving thread.
            await stack.enter_async_context(control_server(settings.control_socket, server.guarded(api.handle)))
        group.create_task(server.serve(), name="vfio_server")

    await run_service("mockaccel_vfio_server", start, drain_timeout=settings.drain_timeout, stop=stop)
