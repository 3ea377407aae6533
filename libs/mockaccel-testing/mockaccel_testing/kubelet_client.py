"""kubelet's side of the DRA plugin sockets, for tests and benchmarks (never in production).

Calls the node agent's registration, DRA (v1 and v1beta1) and health sockets
as kubelet does, through the agent's generated stubs, and hands the answers
back as plain data, so tests assert on values rather than on protobuf types.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from grpclib.client import Channel

from mockaccel_node_agent._generated import pluginregistration as reg
from mockaccel_node_agent._generated import v1alpha1 as dra_health
from mockaccel_node_agent._generated.k8s.io.kubelet.pkg.apis.dra import v1 as dra_v1
from mockaccel_node_agent._generated.k8s.io.kubelet.pkg.apis.dra import v1beta1 as dra_v1beta1
from mockaccel_node_agent.adapters.kubelet_grpc import DRA_PLUGIN_TYPE, PluginInfo
from mockaccel_node_agent.domain.claims import ClaimRef
from mockaccel_node_agent.domain.health import DeviceHealth, Health


@dataclass(frozen=True)
class PrepareAnswer:
    """One claim's entry of a NodePrepareResources answer, as domain data."""

    error: str
    devices: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...]  # pool, device, requests, CDI ids


class KubeletClient:
    """Calls a DRA plugin's sockets as kubelet does; answers come back as plain data."""

    def __init__(self, registration_socket: Path, *, timeout: float = 45.0) -> None:
        self.registration_socket = registration_socket
        self.timeout = timeout
        self._registration = Channel(path=str(registration_socket))
        self._dra: Channel | None = None

    async def get_info(self) -> PluginInfo:
        info = await reg.RegistrationStub(self._registration).get_info(reg.InfoRequest(), timeout=self.timeout)
        if info.type != DRA_PLUGIN_TYPE:
            raise ValueError(f"plugin type is {info.type!r}")
        return PluginInfo(info.name, info.endpoint, tuple(info.supported_versions))

    async def notify(self, registered: bool, error: str = "") -> None:
        await reg.RegistrationStub(self._registration).notify_registration_status(
            reg.RegistrationStatus(plugin_registered=registered, error=error), timeout=self.timeout
        )

    async def _dra_channel(self) -> Channel:
        if self._dra is None:
            info = await self.get_info()
            self._dra = Channel(path=info.endpoint)
        return self._dra

    @staticmethod
    def _api(version: str) -> ModuleType:
        return {"v1": dra_v1, "v1beta1": dra_v1beta1}[version]

    async def _call(self, version: str, method: str, claims: Sequence[ClaimRef]) -> Any:
        """One DRA call (``node_prepare_resources`` or ``node_unprepare_resources``) in ``version``."""
        api = self._api(version)
        wire_claims = [api.Claim(namespace=c.namespace, uid=c.uid, name=c.name) for c in claims]
        request_type = {
            "node_prepare_resources": api.NodePrepareResourcesRequest,
            "node_unprepare_resources": api.NodeUnprepareResourcesRequest,
        }[method]
        stub = api.DraPluginStub(await self._dra_channel())
        return await getattr(stub, method)(request_type(claims=wire_claims), timeout=self.timeout)

    async def prepare(self, claims: Sequence[ClaimRef], version: str = "v1") -> dict[str, PrepareAnswer]:
        response = await self._call(version, "node_prepare_resources", claims)
        return {
            uid: PrepareAnswer(
                error=entry.error,
                devices=tuple(
                    (d.pool_name, d.device_name, tuple(d.request_names), tuple(d.cdi_device_ids)) for d in entry.devices
                ),
            )
            for uid, entry in response.claims.items()
        }

    async def unprepare(self, claims: Sequence[ClaimRef], version: str = "v1") -> dict[str, str]:
        response = await self._call(version, "node_unprepare_resources", claims)
        return {uid: entry.error for uid, entry in response.claims.items()}

    async def watch_health(self) -> AsyncGenerator[tuple[DeviceHealth, ...], None]:
        stub = dra_health.DraResourceHealthStub(await self._dra_channel())
        async for message in stub.node_watch_resources(dra_health.NodeWatchResourcesRequest()):
            yield tuple(
                DeviceHealth(
                    pool=d.device.pool_name,
                    device=d.device.device_name,
                    health=Health(int(d.health)),
                    since=d.last_updated_time,
                    message=d.message,
                )
                for d in message.devices
            )

    def close(self) -> None:
        self._registration.close()
        if self._dra is not None:
            self._dra.close()
