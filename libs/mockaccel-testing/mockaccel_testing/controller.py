"""Helpers of the controller's e2e tests and benchmark (tests/e2e/controller_*, tools/bench).

A controller running in the test's event loop, raw slice listing, a write
counter with a barrier (so "no writes happened" is proved without sleeping),
and a loopback TCP proxy that can cut the controller off the API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes_asyncio.client import ApiClient, ResourceV1Api
from kubernetes_asyncio.client.exceptions import ApiException

from mockaccel_controller import app
from mockaccel_controller.settings import Settings
from mockaccel_testing.polling import wait_until

T = TypeVar("T")
DRIVER = "mock-accel.example.com"
DEVICE_CLASS_DIR = Path("deploy/deviceclasses")


async def list_slices(kube: ApiClient, node: str, version: str = "v1") -> list[dict[str, Any]]:
    """This node's mock-accel slices as raw JSON, sorted by pool then first device."""
    query = [("fieldSelector", f"spec.nodeName={node},spec.driver={DRIVER}")]
    result = await kube.call_api(
        f"/apis/resource.k8s.io/{version}/resourceslices",
        "GET",
        query_params=query,
        header_params={"Accept": "application/json"},
        response_types_map={200: "object"},
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )
    items: list[dict[str, Any]] = result["items"]
    return sorted(items, key=lambda s: (s["spec"]["pool"]["name"], s["spec"]["devices"][0]["name"]))


def device_names(slices: list[dict[str, Any]]) -> dict[str, list[str]]:
    return {s["spec"]["pool"]["name"]: [d["name"] for d in s["spec"]["devices"]] for s in slices}


async def apply_device_classes(kube: ApiClient) -> list[str]:
    """Create the documented DeviceClasses (deploy/deviceclasses) unless they exist."""
    api = ResourceV1Api(kube)
    names = []
    for path in sorted(DEVICE_CLASS_DIR.glob("*.yaml")):
        manifest = yaml.safe_load(path.read_text())
        names.append(manifest["metadata"]["name"])
        with contextlib.suppress(ApiException):
            await api.create_device_class(manifest)
    return names


class RunningController:
    def __init__(self, settings: Settings, task: asyncio.Task[None], stop: asyncio.Event) -> None:
        self.settings = settings
        self.task = task
        self.stop_event = stop

    async def stop(self, timeout: float = 15.0) -> None:
        self.stop_event.set()
        await asyncio.wait_for(self.task, timeout)


@contextlib.asynccontextmanager
async def running_controller(settings: Settings) -> AsyncIterator[RunningController]:
    """Run the controller in this event loop; stop it (and surface its failure) on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(settings, stop), name=f"controller-{settings.node_name}")
    handle = RunningController(settings, task, stop)
    try:
        yield handle
    finally:
        if not task.done():
            await handle.stop()
        task.result()


def controller_settings(node: str, sysfs: Path, kubeconfig: Path, *extra: str) -> Settings:
    return Settings.load(
        [
            "--node-name",
            node,
            "--sysfs-root",
            str(sysfs),
            "--kubeconfig",
            str(kubeconfig),
            "--require-agent",
            "false",
            "--retry-max-delay",
            "1",
            *extra,
        ],
        {},
    )


class WriteCounter:
    """Counts write events on a node's slices (all drivers) through a watch.

    ``barrier()`` creates a sentinel slice of another driver on the node and
    waits for its event: a watch delivers events in resourceVersion order, so
    every write made before the barrier has been counted once it returns.
    """

    def __init__(self, kube: ApiClient, node: str) -> None:
        self.kube = kube
        self.node = node
        self.events: list[tuple[str, str]] = []
        self._sentinels: set[str] = set()
        self._seen: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self.on_event: Callable[[str, str, str], None] | None = None  # (type, slice, pool) of our driver

    async def __aenter__(self) -> WriteCounter:
        listing = await self.kube.call_api(
            "/apis/resource.k8s.io/v1/resourceslices",
            "GET",
            query_params=[("fieldSelector", f"spec.nodeName={self.node}")],
            header_params={"Accept": "application/json"},
            response_types_map={200: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )
        self._task = asyncio.create_task(self._watch(listing["metadata"]["resourceVersion"]))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _watch(self, resource_version: str) -> None:
        response = await self.kube.call_api(
            "/apis/resource.k8s.io/v1/resourceslices",
            "GET",
            query_params=[
                ("fieldSelector", f"spec.nodeName={self.node}"),
                ("watch", "true"),
                ("resourceVersion", resource_version),
            ],
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
        )
        async with response:
            while line := await response.content.readline():
                event = json.loads(line)
                spec = event["object"].get("spec", {})
                name = event["object"]["metadata"]["name"]
                if spec.get("driver") == DRIVER:
                    self.events.append((event["type"], name))
                    if self.on_event is not None:
                        self.on_event(event["type"], name, spec["pool"]["name"])
                elif name in self._sentinels:
                    self._seen.add(name)

    @property
    def writes(self) -> int:
        return len(self.events)

    async def barrier(self) -> None:
        name = f"sentinel-{uuid.uuid4().hex[:8]}"
        self._sentinels.add(name)
        sentinel: Any = {  # a plain dict body: the client accepts it, its stubs only declare models
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceSlice",
            "metadata": {"name": name},
            "spec": {
                "driver": "sentinel.example.com",
                "nodeName": self.node,
                "pool": {"name": name, "generation": 1, "resourceSliceCount": 1},
                "devices": [],
            },
        }
        await ResourceV1Api(self.kube).create_resource_slice(sentinel)

        async def seen() -> bool:
            return name in self._seen

        await wait_until(f"sentinel {name} in the watch", seen, 15)
        await ResourceV1Api(self.kube).delete_resource_slice(name)


class PausableProxy:
    """A loopback TCP proxy in front of the API server that can simulate an outage.

    ``pause()`` drops every open connection and refuses new ones (they are
    accepted and closed at once, as a crashed server behind a load balancer
    would look); ``resume()`` lets traffic through again. TLS passes through
    untouched, so the client still verifies the real server certificate.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.paused = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> PausableProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self._drop_all()
        await self._server.wait_closed()

    def pause(self) -> None:
        self.paused = True
        self._drop_all()

    def resume(self) -> None:
        self.paused = False

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.paused:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


def kubeconfig_via(source: Path, target: Path, port: int) -> Path:
    """A copy of ``source`` whose server is ``https://127.0.0.1:<port>`` (the proxy)."""
    config = yaml.safe_load(source.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{port}"
    target.write_text(yaml.safe_dump(config))
    return target


class PoolRecorder:
    """Watches a node's slices of our driver and records the slice count of every pool after each event.

    ``views`` is what any consumer could have observed between two writes;
    ``barrier()`` (as WriteCounter's) makes sure every write made before it is in.
    """

    def __init__(self, kube: ApiClient, node: str) -> None:
        self._counter = WriteCounter(kube, node)
        self.kube = kube
        self.node = node
        self._pool_of: dict[str, str] = {}
        self.views: list[dict[str, int]] = []

    async def __aenter__(self) -> PoolRecorder:
        for item in await list_slices(self.kube, self.node):
            self._pool_of[item["metadata"]["name"]] = item["spec"]["pool"]["name"]
        self._counter.on_event = self._record
        await self._counter.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._counter.__aexit__(*exc)

    def _record(self, kind: str, name: str, pool: str) -> None:
        if kind == "DELETED":
            self._pool_of.pop(name, None)
        else:
            self._pool_of[name] = pool
        counts: dict[str, int] = {}
        for each in self._pool_of.values():
            counts[each] = counts.get(each, 0) + 1
        self.views.append(counts)

    async def barrier(self) -> None:
        await self._counter.barrier()
