"""The controller's only door to the API server (kubernetes_asyncio).

Why raw JSON through ``ApiClient.call_api`` instead of the generated
``ResourceV1Api`` models: one code path serves ``resource.k8s.io/v1``,
``v1beta2`` and ``v1beta1`` (only the URL and the device shape differ), the
stored object is compared exactly as the server returned it (the generated
models would drop fields they do not know, hiding differences), and no
generated type leaks past this module. Every library exception is turned into
the controller's error tree in ``translate_api_error``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from mockaccel_common.kube import ApiOutcome, classify_status
from mockaccel_common.quantity import canonicalise
from mockaccel_common.versions import MATRIX_HINT, RESOURCE_API_VERSION
from mockaccel_controller.domain.reconcile import SliceWrite, StoredSlice
from mockaccel_controller.domain.slices import Attribute, DeviceSpec
from mockaccel_controller.errors import (
    ApiRefusedError,
    ApiUnavailableError,
    ConflictError,
    ControllerError,
    NodeMissingError,
    NotFoundError,
    PermanentError,
)

GROUP = "resource.k8s.io"
USER_AGENT = "mockaccel-controller"
WATCH_TIMEOUT_S = 300
# The API server's request limit is 3 MiB; an event is one object plus a few bytes.
MAX_WATCH_EVENT_BYTES = 8 * 1024 * 1024
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
LIST_PAGE = 16  # slices per page of a list: ≤ 2,048 devices of decoded JSON at a time
_SPEC_FIELDS = frozenset({"driver", "pool", "nodeName", "devices"})
_LIBRARY_ERRORS = (ApiException, aiohttp.ClientError, TimeoutError, OSError, ValueError)


def translate_api_error(exc: BaseException, what: str) -> ControllerError:
    """The one mapping from library exceptions to the controller's error tree."""
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        message = f"{what}: HTTP {status} {_reason(exc)}"
        outcome = classify_status(status)  # the one policy, shared with the node agent
        if outcome is ApiOutcome.NOT_FOUND:
            return NotFoundError(message)
        if outcome is ApiOutcome.CONFLICT:
            return ConflictError(message)
        if outcome is ApiOutcome.EXPIRED:  # watch resourceVersion expired: re-list at once
            return ConflictError(message, delay=0.0)
        if outcome is ApiOutcome.REFUSED:
            return ApiRefusedError(f"{message}; check the controller's RBAC")
        if outcome is ApiOutcome.RETRY:
            return ApiUnavailableError(message, delay=_retry_after(exc))
        return PermanentError(message)
    if isinstance(exc, aiohttp.ClientError | TimeoutError | OSError):
        return ApiUnavailableError(f"{what}: {type(exc).__name__}: {exc}")
    return PermanentError(f"{what}: unexpected response: {exc}")


def _reason(exc: ApiException) -> str:
    raw: Any = exc.body
    body = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    try:
        status = json.loads(body) if isinstance(body, str) else None
    except ValueError:
        status = None
    if isinstance(status, dict) and status.get("kind") == "Status":
        return str(status.get("message", exc.reason))[:256]
    return str(exc.reason)[:256]


def _retry_after(exc: ApiException) -> float | None:
    headers: Any = exc.headers or {}
    value = headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def choose_version(served: Sequence[str], forced: str = "") -> str:
    """The resource.k8s.io version to speak: ``forced`` if served, else v1.

    No silent fallback to v1beta2/v1beta1: a server without v1 is outside the
    support matrix (mockaccel_common.versions), and the node agent, which reads
    claims through v1, could not prepare anything there anyway. ``forced``
    writes another shape that a supported server also serves.
    """
    if forced:
        if forced not in served:
            raise PermanentError(f"{GROUP}/{forced} is not served (served: {', '.join(served) or 'none'})")
        return forced
    if RESOURCE_API_VERSION in served:
        return RESOURCE_API_VERSION
    raise PermanentError(
        f"{GROUP}/{RESOURCE_API_VERSION} is not served (served: {', '.join(served) or 'none'}); {MATRIX_HINT}"
    )


# --- wire format <-> domain ----------------------------------------------------------


def device_to_wire(spec: DeviceSpec, version: str) -> dict[str, Any]:
    body = {
        "attributes": {key: {a.kind: a.value} for key, a in spec.attributes},
        "capacity": {key: {"value": value} for key, value in spec.capacity},
    }
    if version == "v1beta1":  # v1beta1 wraps the device's fields in "basic"
        return {"name": spec.name, "basic": body}
    return {"name": spec.name, **body}


def device_from_wire(obj: Mapping[str, Any], version: str) -> DeviceSpec:
    fields = dict(obj)
    name = str(fields.pop("name", ""))
    if version == "v1beta1":
        body = dict(fields.pop("basic", None) or {})
        extras = [k for k, v in fields.items() if v]
    else:
        body = fields
        extras = []
    attributes: dict[str, Attribute] = {}
    for key, value in (body.pop("attributes", None) or {}).items():
        present = [(kind, v) for kind, v in value.items() if v is not None]
        if len(present) == 1:
            attributes[key] = Attribute(present[0][0], present[0][1])
        else:
            extras.append(f"attributes.{key}")
    capacity: dict[str, str] = {}
    for key, value in (body.pop("capacity", None) or {}).items():
        capacity[key] = canonicalise(str(value.get("value", "")))
        if any(v for k, v in value.items() if k != "value"):
            extras.append(f"capacity.{key}")
    extras += [k for k, v in body.items() if v]  # what is left: fields this controller never writes
    return DeviceSpec.of(name, attributes, capacity, extras)


def stored_from_wire(
    obj: Mapping[str, Any], version: str, written: tuple[Sequence[Any], tuple[DeviceSpec, ...]] | None = None
) -> StoredSlice:
    """The domain value of a slice; ``written`` is (wire devices, their specs) of a write this answers.

    When the server stored the devices exactly as written (a plain comparison
    of the JSON values, in C), the written specs are reused instead of being
    converted back one attribute at a time: on a 10,000-device node that
    conversion was a third of the time to publish, and a second copy of every
    device in memory.
    """
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    pool = spec.get("pool") or {}
    wire_devices = spec.get("devices") or []
    if written is not None and wire_devices == written[0]:
        devices = written[1]
    else:
        devices = tuple(device_from_wire(d, version) for d in wire_devices)
    return StoredSlice(
        name=str(metadata.get("name", "")),
        uid=str(metadata.get("uid", "")),
        resource_version=str(metadata.get("resourceVersion", "")),
        pool=str(pool.get("name", "")),
        generation=int(pool.get("generation") or 0),
        slice_count=int(pool.get("resourceSliceCount") or 0),
        devices=devices,
        labels=dict(metadata.get("labels") or {}),
        foreign_spec=tuple(sorted(k for k, v in spec.items() if k not in _SPEC_FIELDS and v)),
        # Only the metadata is needed again (an update echoes it); the devices' JSON is not kept:
        # on a 10,000-device node the listed JSON was most of the controller's memory.
        raw={"metadata": {k: v for k, v in metadata.items() if k != "managedFields"}},
    )


@dataclass(frozen=True)
class Owner:
    """The Node that owns this node's slices (garbage collection follows it)."""

    name: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": self.uid, "controller": True}


def slice_spec_to_wire(content: SliceWrite, version: str, driver: str, node: str) -> dict[str, Any]:
    return {
        "driver": driver,
        "nodeName": node,
        "pool": {"name": content.pool, "generation": content.generation, "resourceSliceCount": content.slice_count},
        "devices": [device_to_wire(d, version) for d in content.devices],
    }


# --- the client ---------------------------------------------------------------------


@dataclass(frozen=True)
class WatchEvent:
    kind: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    name: str
    resource_version: str


class KubeApi:
    """ResourceSlice and Node calls for one node and driver, in the version discovery chose."""

    def __init__(self, client: ApiClient, *, node: str, driver: str, request_timeout: float) -> None:
        self._client = client
        self.node = node
        self.driver = driver
        self._timeout = request_timeout
        self.version = ""
        self._parsed: dict[tuple[str, str], StoredSlice] = {}  # (uid, resourceVersion) -> the slice listed last

    @property
    def _collection(self) -> str:
        return f"/apis/{GROUP}/{self.version}/resourceslices"

    @property
    def _selector(self) -> list[tuple[str, str]]:
        return [("fieldSelector", f"spec.nodeName={self.node},spec.driver={self.driver}")]

    async def _call(
        self, method: str, path: str, what: str, *, query: list[tuple[str, str]] | None = None, body: Any = None
    ) -> Any:
        # ApiClient.request, not call_api: the bodies here are plain JSON values already, and
        # call_api walks them with a Python call per value first (sanitize_for_serialization),
        # about a second of CPU for the creates of a 10,000-device node. The rest of what call_api
        # does is here: default headers (User-Agent), the token, the host; the status check and
        # the JSON encoding of the body are the REST client's, as before.
        client = self._client
        headers = {"Accept": "application/json", "Content-Type": "application/json", **client.default_headers}
        params = list(query or [])
        try:
            await client.update_params_for_auth(headers, params, ["BearerToken"])
            response = await client.request(
                method,
                f"{client.configuration.host}{path}",
                query_params=params,
                headers=headers,
                body=body,
                _preload_content=True,
                _request_timeout=self._timeout,
            )
            return json.loads(response.data) if response.data else None
        except _LIBRARY_ERRORS as exc:
            raise translate_api_error(exc, what) from exc

    async def discover(self, forced: str = "") -> str:
        """Pick the resource.k8s.io version from the server's discovery document."""
        try:
            group = await self._call("GET", f"/apis/{GROUP}", "discovery")
        except NotFoundError as exc:
            raise PermanentError(f"the API server does not serve {GROUP}") from exc
        served = [str(v.get("version")) for v in (group or {}).get("versions", [])]
        self.version = choose_version(served, forced)
        return self.version

    async def node_owner(self) -> Owner:
        try:
            node = await self._call("GET", f"/api/v1/nodes/{self.node}", "get node")
        except NotFoundError as exc:
            raise NodeMissingError(f"Node {self.node} does not exist") from exc
        return Owner(self.node, str(node["metadata"]["uid"]))

    async def list_slices(self) -> tuple[list[StoredSlice], str]:
        """This node's slices of this driver, and the list's resourceVersion (to start a watch).

        Listed in pages of ``LIST_PAGE`` slices (one snapshot: the pages share the
        first page's resourceVersion), so that no more than a page of decoded JSON
        is alive at once: a 10,000-device node's list in one piece was the peak
        of the controller's memory.
        """
        # A slice whose resourceVersion is unchanged converts to the same value: reuse it. On a
        # 1,024-device node converting every device of every listed slice was a third of a pass.
        items: list[StoredSlice] = []
        parsed: dict[tuple[str, str], StoredSlice] = {}
        version = ""
        token = ""
        while True:
            query = [*self._selector, ("limit", str(LIST_PAGE))] + ([("continue", token)] if token else [])
            result = await self._call("GET", self._collection, "list slices", query=query)
            for item in result.get("items") or ():
                metadata = item.get("metadata") or {}
                key = (str(metadata.get("uid", "")), str(metadata.get("resourceVersion", "")))
                stored = self._parsed.get(key)
                if stored is None:
                    stored = stored_from_wire(item, self.version)
                if all(key):
                    parsed[key] = stored
                items.append(stored)
            list_metadata = result.get("metadata") or {}
            version = version or str(list_metadata.get("resourceVersion", ""))
            token = str(list_metadata.get("continue") or "")
            del result
            if not token:
                break
        self._parsed = parsed
        return items, version

    async def list_version(self) -> str:
        """The current resourceVersion of this node's slices (to start a watch), without listing them."""
        query = [*self._selector, ("limit", "1")]
        result = await self._call("GET", self._collection, "list slices", query=query)
        return str((result.get("metadata") or {}).get("resourceVersion", ""))

    def _written(self, obj: Mapping[str, Any], body: Mapping[str, Any], content: SliceWrite) -> StoredSlice:
        stored = stored_from_wire(obj, self.version, (body["spec"]["devices"], content.devices))
        if stored.uid and stored.resource_version:  # a later list of the same version reuses it
            self._parsed[(stored.uid, stored.resource_version)] = stored
        return stored

    async def create(self, content: SliceWrite, owner: Owner) -> StoredSlice:
        body = {
            "apiVersion": f"{GROUP}/{self.version}",
            "kind": "ResourceSlice",
            "metadata": {
                "generateName": f"{self.node}-{self.driver}-",
                "labels": dict(content.labels),
                "ownerReferences": [owner.reference()],
            },
            "spec": slice_spec_to_wire(content, self.version, self.driver, self.node),
        }
        created = await self._call("POST", self._collection, "create slice", body=body)
        return self._written(created, body, content)

    async def update(self, target: StoredSlice, content: SliceWrite) -> StoredSlice:
        """Replace the slice's spec, guarded by its resourceVersion; other metadata is kept."""
        metadata = dict((target.raw or {}).get("metadata") or {"name": target.name})
        metadata.pop("managedFields", None)  # omitted means "keep"; echoing them back is pointless
        metadata["resourceVersion"] = target.resource_version
        metadata["labels"] = {**(metadata.get("labels") or {}), **content.labels}
        body = {
            "apiVersion": f"{GROUP}/{self.version}",
            "kind": "ResourceSlice",
            "metadata": metadata,
            "spec": slice_spec_to_wire(content, self.version, self.driver, self.node),
        }
        try:
            updated = await self._call("PUT", f"{self._collection}/{target.name}", "update slice", body=body)
        except NotFoundError as exc:
            raise ConflictError(f"slice {target.name} vanished before its update") from exc
        return self._written(updated, body, content)

    async def delete(self, target: StoredSlice) -> None:
        """Delete the slice only if it is still the one we planned with (uid and resourceVersion)."""
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"uid": target.uid, "resourceVersion": target.resource_version},
        }
        try:
            await self._call("DELETE", f"{self._collection}/{target.name}", "delete slice", body=body)
        except NotFoundError:
            return  # already gone: the goal of a delete

    async def watch(self, resource_version: str) -> AsyncIterator[WatchEvent]:
        """Events on this node's slices after ``resource_version`` until the server ends the watch."""
        query = [
            *self._selector,
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", resource_version),
            ("timeoutSeconds", str(WATCH_TIMEOUT_S)),
        ]
        try:
            response = await self._client.call_api(
                self._collection,
                "GET",
                query_params=query,
                # Metadata only (as client-go's metadata informers ask): an event's name and version
                # are all this watch reads, and a full slice of 128 devices is ~100 KB of JSON that
                # the API server encoded and this process decoded, 84 times when a 10,000-device node
                # is published. Plain JSON is the fallback the server picks if it cannot do this.
                header_params={"Accept": f"{METADATA_ONLY}, application/json"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=aiohttp.ClientTimeout(sock_connect=self._timeout, sock_read=WATCH_TIMEOUT_S + 30),
            )
        except _LIBRARY_ERRORS as exc:
            raise translate_api_error(exc, "watch slices") from exc
        async with response:
            if response.status != 200:
                error = ApiException(status=response.status, reason=await response.text())
                raise translate_api_error(error, "watch slices")
            # Not readline(): aiohttp raises ValueError for a line over 64 KiB, and one
            # slice of 128 devices with many attributes (or a large annotation) is more.
            pending = bytearray()
            while True:
                try:
                    chunk = await response.content.readany()
                except _LIBRARY_ERRORS as exc:
                    raise ApiUnavailableError(f"watch slices: {type(exc).__name__}: {exc}") from exc
                if not chunk:
                    return
                pending += chunk
                while (end := pending.find(b"\n")) >= 0:
                    if end >= MAX_WATCH_EVENT_BYTES:
                        break
                    line = bytes(pending[: end + 1])
                    del pending[: end + 1]
                    yield _watch_event(line)
                if len(pending) > MAX_WATCH_EVENT_BYTES:
                    # Retryable: the pass after it re-lists, which needs no watch line at all.
                    raise ApiUnavailableError(f"watch slices: an event longer than {MAX_WATCH_EVENT_BYTES} bytes")


def _watch_event(line: bytes) -> WatchEvent:
    try:
        event = json.loads(line)
    except ValueError as exc:
        raise ApiUnavailableError(f"watch slices: malformed event: {line[:256]!r}") from exc
    obj = event.get("object") or {}
    if event.get("type") == "ERROR":
        error = ApiException(status=obj.get("code", 500), reason=obj.get("message", ""))
        raise translate_api_error(error, "watch slices")
    metadata = obj.get("metadata") or {}
    return WatchEvent(str(event.get("type")), str(metadata.get("name", "")), str(metadata.get("resourceVersion", "")))
