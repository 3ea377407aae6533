"""Liveness that exercises the plugin's own sockets, and the Prometheus endpoint.

"Health means working": Check on ``grpc.health.v1.Health`` calls GetInfo on
our registration socket and an empty NodePrepareResources on our DRA socket,
as kubelet would, and also fails while kubelet reports our registration as
failed (so a restart re-creates the socket and kubelet tries again).
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

from prometheus_client import start_http_server

from mockaccel_common.logging import get_logger
from mockaccel_node_agent.adapters.kubelet_grpc import LivenessService, self_check, start_tcp_server
from mockaccel_node_agent.adapters.metrics import Metrics
from mockaccel_node_agent.registration import RegistrationState

log = get_logger("mockaccel_node_agent.adapters.probes")

SELF_CHECK_TIMEOUT = 5.0


async def start_liveness(
    stack: AsyncExitStack,
    *,
    host: str,
    port: int,
    registration_socket: Path,
    dra_socket: Path,
    registration: RegistrationState,
) -> int:
    async def probe() -> str | None:
        problem = registration.problem or await self_check(registration_socket, dra_socket, SELF_CHECK_TIMEOUT)
        if problem:
            log.warning("liveness_failed", problem=problem)
        return problem

    server, bound = await start_tcp_server([LivenessService(probe)], host, port)

    async def close() -> None:
        server.close()
        await server.wait_closed()

    stack.push_async_callback(close)
    log.info("liveness_listening", host=host, port=bound)
    return bound


async def start_metrics(stack: AsyncExitStack, *, host: str, port: int, metrics: Metrics) -> int:
    httpd, thread = await asyncio.to_thread(start_http_server, port, host, metrics.registry)
    bound = int(httpd.server_port)

    async def close() -> None:
        await asyncio.to_thread(httpd.shutdown)
        httpd.server_close()
        await asyncio.to_thread(thread.join, 5.0)

    stack.push_async_callback(close)
    log.info("metrics_listening", host=host, port=bound)
    return bound
