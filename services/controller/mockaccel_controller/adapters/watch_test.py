"""The slice watch against a loopback server that sends watch lines no real API server sends.

Fault injection only (the e2e tests use the real API server): kubernetes_asyncio
reads with a 2 MiB buffer, so aiohttp's readline() raised ValueError for any
event line over 4 MiB, and the controller turned it into PermanentError and exited.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web

from mockaccel_common.kube import api_client
from mockaccel_controller.adapters.k8s import MAX_WATCH_EVENT_BYTES, KubeApi
from mockaccel_controller.errors import ApiUnavailableError, RetryableError
from mockaccel_testing.node_agent import kubeconfig_for

pytestmark = pytest.mark.asyncio


def _event(name: str, padding: int) -> bytes:
    obj = {"metadata": {"name": name, "resourceVersion": "7", "annotations": {"pad": "x" * padding}}}
    return json.dumps({"type": "MODIFIED", "object": obj}).encode() + b"\n"


class WatchServer:
    def __init__(self, lines: list[bytes]) -> None:
        self.lines = lines
        app = web.Application()
        app.router.add_get("/apis/resource.k8s.io/v1/resourceslices", self._watch)
        self._runner = web.AppRunner(app)
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for line in self.lines:
            for start in range(0, len(line), 1 << 20):
                await response.write(line[start : start + (1 << 20)])
        await response.write_eof()
        return response

    async def start(self) -> None:
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()

    async def stop(self) -> None:
        await self._runner.cleanup()


@pytest_asyncio.fixture
async def kube_api(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[KubeApi]:
    server = WatchServer(request.param)
    await server.start()
    try:
        async with api_client(kubeconfig_for(tmp_path / "kubeconfig", server=server.url), user_agent="t") as client:
            api = KubeApi(client, node="n", driver="d", request_timeout=5)
            api.version = "v1"
            yield api
    finally:
        await server.stop()


@pytest.mark.parametrize(
    "kube_api", [[_event("small", 10), _event("big", 5 << 20), _event("after", 10)]], indirect=True
)
async def test_a_5_MiB_watch_event_is_read_like_any_other(kube_api: KubeApi) -> None:
    names = [event.name async for event in kube_api.watch("1")]
    assert names == ["small", "big", "after"]


@pytest.mark.parametrize("kube_api", [[_event("huge", MAX_WATCH_EVENT_BYTES + 1)]], indirect=True)
async def test_an_event_over_the_bound_is_retryable_not_permanent(kube_api: KubeApi) -> None:
    with pytest.raises(ApiUnavailableError) as raised:
        _ = [event async for event in kube_api.watch("1")]
    assert isinstance(raised.value, RetryableError)
