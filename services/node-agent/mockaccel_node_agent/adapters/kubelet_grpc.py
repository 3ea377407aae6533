"""kubelet's gRPC services over grpclib, and the only home of the generated types.

Registration (``pluginregistration.Registration``), the DRA plugin service in
both ``k8s.io.kubelet.pkg.apis.dra.v1`` and ``…v1beta1``, the health stream
``v1alpha1.DRAResourceHealth`` and the standard ``grpc.health.v1.Health`` used
as liveness probe. Requests become domain types at the top of each handler
and answers are built from domain types at the bottom, so switching the code
generator touches this module only. Domain errors become gRPC statuses in
``_status`` and nowhere else.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.server import Server

from mockaccel_node_agent._generated import pluginregistration as reg
from mockaccel_node_agent._generated import v1alpha1 as dra_health
from mockaccel_node_agent._generated.grpc.health import v1 as grpc_health
from mockaccel_node_agent._generated.k8s.io.kubelet.pkg.apis.dra import v1 as dra_v1
from mockaccel_node_agent._generated.k8s.io.kubelet.pkg.apis.dra import v1beta1 as dra_v1beta1
from mockaccel_node_agent.adapters.grpc_guard import GuardedServer, Limits, clip
from mockaccel_node_agent.domain.claims import MAX_CLAIMS_PER_REQUEST, ClaimRef, check_request
from mockaccel_node_agent.domain.health import DeviceHealth
from mockaccel_node_agent.errors import InvalidRequestError, NodeAgentError, RetryableError
from mockaccel_node_agent.preparing import ClaimOutcome

DRA_PLUGIN_TYPE = "DRAPlugin"
DRA_V1 = "v1.DRAPlugin"
DRA_V1BETA1 = "v1beta1.DRAPlugin"
HEALTH_V1ALPHA1 = "v1alpha1.DRAResourceHealth"


def _status(exc: NodeAgentError) -> GRPCError:
    """The one mapping from the error tree to gRPC statuses."""
    message = clip(str(exc))  # may quote client input; trailers and logs stay small
    if isinstance(exc, InvalidRequestError):
        return GRPCError(Status.INVALID_ARGUMENT, message)
    if isinstance(exc, RetryableError):
        return GRPCError(Status.UNAVAILABLE, message)
    return GRPCError(Status.INTERNAL, message)


# --- plugin registration -------------------------------------------------------


@dataclass(frozen=True)
class PluginInfo:
    name: str
    endpoint: str
    supported_versions: tuple[str, ...]


class RegistrationService(reg.RegistrationBase):
    def __init__(self, info: PluginInfo, on_status: Callable[[bool, str], None]) -> None:
        self._info = info
        self._on_status = on_status

    async def get_info(self, info_request: reg.InfoRequest) -> reg.PluginInfo:
        return reg.PluginInfo(
            type=DRA_PLUGIN_TYPE,
            name=self._info.name,
            endpoint=self._info.endpoint,
            supported_versions=list(self._info.supported_versions),
        )

    async def notify_registration_status(
        self, registration_status: reg.RegistrationStatus
    ) -> reg.RegistrationStatusResponse:
        error = clip(registration_status.error)  # echoed into a trailer and a log line: never whole
        self._on_status(registration_status.plugin_registered, error)
        if not registration_status.plugin_registered:
            # As the kubeletplugin helper does: a failed registration is an error answer.
            raise GRPCError(Status.UNKNOWN, f"kubelet failed to register the plugin: {error}")
        return reg.RegistrationStatusResponse()


# --- the DRA plugin service, v1 and v1beta1 --------------------------------------


class Claims:
    """What the DRA servicers need from the domain."""

    prepare: Callable[[Sequence[ClaimRef]], Awaitable[Mapping[str, ClaimOutcome]]]
    unprepare: Callable[[Sequence[ClaimRef]], Awaitable[Mapping[str, str]]]

    def __init__(
        self,
        prepare: Callable[[Sequence[ClaimRef]], Awaitable[Mapping[str, ClaimOutcome]]],
        unprepare: Callable[[Sequence[ClaimRef]], Awaitable[Mapping[str, str]]],
    ) -> None:
        self.prepare = prepare
        self.unprepare = unprepare


def _refs(claims: Sequence[Any]) -> list[ClaimRef]:
    """The request's claims; a request that cannot be answered claim by claim is INVALID_ARGUMENT."""
    if len(claims) > MAX_CLAIMS_PER_REQUEST:
        raise _status(InvalidRequestError(f"{len(claims)} claims in one request; at most {MAX_CLAIMS_PER_REQUEST}"))
    refs = [ClaimRef(namespace=c.namespace, uid=c.uid, name=c.name) for c in claims]
    try:
        check_request(refs)
    except InvalidRequestError as exc:
        raise _status(exc) from exc
    return refs


async def _prepare(api: ModuleType, claims: Claims, request: Any) -> Any:
    refs = _refs(request.claims)
    try:
        outcomes = await claims.prepare(refs)
    except NodeAgentError as exc:
        raise _status(exc) from exc
    answer = {}
    for uid, outcome in outcomes.items():
        if outcome.error:
            answer[uid] = api.NodePrepareResourceResponse(error=outcome.error)
            continue
        answer[uid] = api.NodePrepareResourceResponse(
            devices=[
                api.Device(
                    request_names=list(d.request_names),
                    pool_name=d.pool,
                    device_name=d.device,
                    cdi_device_ids=list(d.cdi_device_ids),
                )
                for d in outcome.devices
            ]
        )
    return api.NodePrepareResourcesResponse(claims=answer)


async def _unprepare(api: ModuleType, claims: Claims, request: Any) -> Any:
    refs = _refs(request.claims)
    try:
        errors = await claims.unprepare(refs)
    except NodeAgentError as exc:
        raise _status(exc) from exc
    return api.NodeUnprepareResourcesResponse(
        claims={uid: api.NodeUnprepareResourceResponse(error=error) for uid, error in errors.items()}
    )


class DraV1Service(dra_v1.DraPluginBase):
    def __init__(self, claims: Claims) -> None:
        self._claims = claims

    async def node_prepare_resources(
        self, node_prepare_resources_request: dra_v1.NodePrepareResourcesRequest
    ) -> dra_v1.NodePrepareResourcesResponse:
        response: dra_v1.NodePrepareResourcesResponse = await _prepare(
            dra_v1, self._claims, node_prepare_resources_request
        )
        return response

    async def node_unprepare_resources(
        self, node_unprepare_resources_request: dra_v1.NodeUnprepareResourcesRequest
    ) -> dra_v1.NodeUnprepareResourcesResponse:
        response: dra_v1.NodeUnprepareResourcesResponse = await _unprepare(
            dra_v1, self._claims, node_unprepare_resources_request
        )
        return response


class DraV1beta1Service(dra_v1beta1.DraPluginBase):
    def __init__(self, claims: Claims) -> None:
        self._claims = claims

    async def node_prepare_resources(
        self, node_prepare_resources_request: dra_v1beta1.NodePrepareResourcesRequest
    ) -> dra_v1beta1.NodePrepareResourcesResponse:
        response: dra_v1beta1.NodePrepareResourcesResponse = await _prepare(
            dra_v1beta1, self._claims, node_prepare_resources_request
        )
        return response

    async def node_unprepare_resources(
        self, node_unprepare_resources_request: dra_v1beta1.NodeUnprepareResourcesRequest
    ) -> dra_v1beta1.NodeUnprepareResourcesResponse:
        response: dra_v1beta1.NodeUnprepareResourcesResponse = await _unprepare(
            dra_v1beta1, self._claims, node_unprepare_resources_request
        )
        return response


# --- device health stream -----------------------------------------------------


def _health_message(devices: Sequence[DeviceHealth], timeout_seconds: int) -> dra_health.NodeWatchResourcesResponse:
    return dra_health.NodeWatchResourcesResponse(
        devices=[
            dra_health.DeviceHealth(
                device=dra_health.DeviceIdentifier(pool_name=d.pool, device_name=d.device),
                health=dra_health.HealthStatus(d.health.value),
                last_updated_time=d.since,
                health_check_timeout_seconds=timeout_seconds,
                message=d.message,
            )
            for d in devices
        ]
    )


class ResourceHealthService(dra_health.DraResourceHealthBase):
    def __init__(
        self, subscribe: Callable[[], AsyncIterator[Sequence[DeviceHealth]]], *, timeout_seconds: int = 0
    ) -> None:
        self._subscribe = subscribe
        self._timeout_seconds = timeout_seconds

    async def node_watch_resources(
        self, node_watch_resources_request: dra_health.NodeWatchResourcesRequest
    ) -> AsyncIterator[dra_health.NodeWatchResourcesResponse]:
        async for devices in self._subscribe():
            yield _health_message(devices, self._timeout_seconds)


# --- liveness: grpc.health.v1 over TCP ------------------------------------------


class LivenessService(grpc_health.HealthBase):
    """Check answers SERVING only when ``probe`` finds the plugin working."""

    def __init__(self, probe: Callable[[], Awaitable[str | None]]) -> None:
        self._probe = probe

    async def check(self, health_check_request: grpc_health.HealthCheckRequest) -> grpc_health.HealthCheckResponse:
        problem = await self._probe()
        serving = grpc_health.HealthCheckResponseServingStatus
        if problem:
            return grpc_health.HealthCheckResponse(status=serving(serving.NOT_SERVING))
        return grpc_health.HealthCheckResponse(status=serving(serving.SERVING))


async def self_check(registration_socket: Path, dra_socket: Path, timeout: float) -> str | None:
    """Call our own sockets as kubelet would: GetInfo, then an empty NodePrepareResources."""
    registration = Channel(path=str(registration_socket))
    try:
        await reg.RegistrationStub(registration).get_info(reg.InfoRequest(), timeout=timeout)
    except (TimeoutError, GRPCError, StreamTerminatedError, OSError) as exc:
        return f"GetInfo on {registration_socket} failed: {exc!r}"
    finally:
        registration.close()
    dra = Channel(path=str(dra_socket))
    try:
        await dra_v1.DraPluginStub(dra).node_prepare_resources(dra_v1.NodePrepareResourcesRequest(), timeout=timeout)
    except (TimeoutError, GRPCError, StreamTerminatedError, OSError) as exc:
        return f"NodePrepareResources on {dra_socket} failed: {exc!r}"
    finally:
        dra.close()
    return None


async def check_liveness(host: str, port: int, timeout: float = 5.0) -> bool:
    """Call grpc.health.v1.Health/Check like a kubelet gRPC probe; True if SERVING."""
    channel = Channel(host=host, port=port)
    try:
        answer = await grpc_health.HealthStub(channel).check(grpc_health.HealthCheckRequest(), timeout=timeout)
    finally:
        channel.close()
    return answer.status == grpc_health.HealthCheckResponseServingStatus.SERVING


# --- servers -----------------------------------------------------------------


def dra_handlers(claims: Claims, health: ResourceHealthService | None) -> list[Any]:
    handlers: list[Any] = [DraV1Service(claims), DraV1beta1Service(claims)]
    if health is not None:
        handlers.append(health)
    return handlers


def supported_versions(health_stream: bool) -> tuple[str, ...]:
    """kubelet takes the first DRAPlugin version it knows, walking this list in order."""
    return (DRA_V1, DRA_V1BETA1, HEALTH_V1ALPHA1) if health_stream else (DRA_V1, DRA_V1BETA1)


async def start_unix_server(
    handlers: Sequence[Any],
    path: Path,
    *,
    limits: Limits | None = None,
    on_reject: Callable[[str], None] = lambda _reason: None,
) -> Server:
    """Serve kubelet's socket with every input bounded (adapters/grpc_guard.py)."""
    server = GuardedServer(list(handlers), limits=limits, on_reject=on_reject)
    await server.start(path=str(path))
    return server


async def start_tcp_server(handlers: Sequence[Any], host: str, port: int) -> tuple[Server, int]:
    """Serve on host:port (0: a free port); returns the server and the bound port."""
    sock = socket.create_server((host, port), reuse_port=False)
    bound = int(sock.getsockname()[1])
    server = Server(list(handlers))
    try:
        await server.start(sock=sock)
    except BaseException:
        sock.close()
        raise
    return server, bound
