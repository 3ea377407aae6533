"""The node agent's lifecycle: reconcile, then serve kubelet until SIGTERM.

Start-up order matters. Reconciliation runs first (under the shared lock), so
nothing is served from a state that disagrees with the checkpoint. The DRA
socket comes up before the registration socket, because kubelet connects to
the endpoint as soon as it sees the registration socket. Shutdown runs in
reverse: the registration socket goes first (kubelet deregisters this
instance), then the DRA socket, then state changes still under way finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from contextlib import AsyncExitStack
from pathlib import Path

from grpclib.server import Server

from mockaccel_common.kube import api_client
from mockaccel_common.logging import get_logger
from mockaccel_common.runner import run_service
from mockaccel_node_agent.adapters.faults import FaultPoints
from mockaccel_node_agent.adapters.host import Host
from mockaccel_node_agent.adapters.k8s import ClaimReader
from mockaccel_node_agent.adapters.kubelet_grpc import (
    Claims,
    PluginInfo,
    RegistrationService,
    ResourceHealthService,
    dra_handlers,
    start_unix_server,
    supported_versions,
)
from mockaccel_node_agent.adapters.metrics import Metrics
from mockaccel_node_agent.adapters.probes import start_liveness, start_metrics
from mockaccel_node_agent.adapters.state import CheckpointStore, SerialLock
from mockaccel_node_agent.domain.cdi_building import CdiLayout
from mockaccel_node_agent.health_feed import HealthFeed
from mockaccel_node_agent.preparing import Preparer
from mockaccel_node_agent.reconciling import reconcile
from mockaccel_node_agent.registration import RegistrationState
from mockaccel_node_agent.settings import Settings

log = get_logger("mockaccel_node_agent")


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


async def _serve_unix(stack: AsyncExitStack, handlers: list[object], path: Path, metrics: Metrics) -> Server:
    """Serve on a Unix socket that this instance owns: replaced at start, removed at stop."""
    await asyncio.to_thread(_unlink, path)

    def rejected(reason: str) -> None:
        metrics.rejected_requests.labels(reason=reason).inc()

    server = await start_unix_server(handlers, path, on_reject=rejected)

    async def close() -> None:
        await asyncio.to_thread(_unlink, path)
        server.close()
        await server.wait_closed()

    stack.push_async_callback(close)
    log.info("socket_serving", path=str(path))
    return server


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    async def start(stack: AsyncExitStack, group: asyncio.TaskGroup) -> None:
        for directory in (settings.plugin_dir, settings.cdi_dir, settings.registry_dir):
            await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        metrics = Metrics()
        host = Host(
            settings.sysfs_root,
            settings.cdi_dir,
            CdiLayout(device_dir=str(settings.device_dir), sysfs_dir=str(settings.cdi_sysfs_dir)),
        )
        store = CheckpointStore(settings.plugin_dir)
        lock = SerialLock(settings.plugin_dir)
        checkpoint, _ = await reconcile(host, store, lock)
        metrics.prepared_claims.set(len(checkpoint.claims))

        api = await stack.enter_async_context(api_client(settings.kubeconfig, user_agent="mockaccel-node-agent"))
        preparer = Preparer(
            driver=settings.driver_name,
            node=settings.node_name,
            host=host,
            store=store,
            lock=lock,
            claims=ClaimReader(api, timeout=settings.api_timeout),
            fetch_concurrency=settings.claim_fetch_concurrency,
            metrics=metrics,
            faults=FaultPoints(settings.fault_point),
        )
        stack.push_async_callback(preparer.aclose)

        health_service = None
        if settings.health_stream:
            feed = HealthFeed(settings.node_name, host, metrics)
            await feed.refresh()
            group.create_task(feed.run(settings.sysfs_root), name="health-feed")
            health_service = ResourceHealthService(
                functools.partial(feed.subscribe, settings.health_resend_interval),
                timeout_seconds=settings.health_check_timeout,
            )

        claims = Claims(preparer.prepare, preparer.unprepare)
        await _serve_unix(stack, list(dra_handlers(claims, health_service)), settings.dra_socket, metrics)
        registration = RegistrationState(metrics)
        info = PluginInfo(
            name=settings.driver_name,
            endpoint=str(settings.dra_socket.absolute()),
            supported_versions=supported_versions(settings.health_stream),
        )
        await _serve_unix(
            stack, [RegistrationService(info, registration.record)], settings.registration_socket, metrics
        )

        if settings.health_port >= 0:
            await start_liveness(
                stack,
                host=settings.listen_host,
                port=settings.health_port,
                registration_socket=settings.registration_socket,
                dra_socket=settings.dra_socket,
                registration=registration,
            )
        if settings.metrics_port >= 0:
            await start_metrics(stack, host=settings.listen_host, port=settings.metrics_port, metrics=metrics)
        log.info(
            "agent_ready",
            node=settings.node_name,
            driver=settings.driver_name,
            registration_socket=str(settings.registration_socket),
            dra_socket=str(settings.dra_socket),
            prepared_claims=len(checkpoint.claims),
        )

    await run_service("mockaccel_node_agent", start, drain_timeout=settings.drain_timeout, stop=stop)
