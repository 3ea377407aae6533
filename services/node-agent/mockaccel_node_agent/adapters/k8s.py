"""Reading ResourceClaims (resource.k8s.io/v1) with kubernetes_asyncio.

The agent needs exactly one verb: ``get`` on ``resourceclaims``. The body is
read as JSON and handed to the domain (``ClaimAllocation.from_object``)
rather than through the client's generated models, which cost more than the
whole rest of a prepare call. The request goes through ``ApiClient.call_api``
(the client's own authentication, TLS and connection pool) rather than the
generated ``ResourceV1Api``: that module alone is ~7 MiB of resident memory
and its per-call parameter checks are work a fixed GET does not need. Every
library error is translated here.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from mockaccel_common.kube import ApiOutcome, classify_status
from mockaccel_common.versions import MATRIX_HINT
from mockaccel_node_agent.domain.claims import ClaimAllocation, ClaimRef
from mockaccel_node_agent.errors import ApiUnavailableError, ClaimError, ClaimNotFoundError

CLAIM_PATH = "/apis/resource.k8s.io/v1/namespaces/{namespace}/resourceclaims/{name}"


def _is_status(body: bytes) -> bool:
    """Whether a body is a Kubernetes Status object (a 404 for a missing claim is; an unserved API's is not)."""
    try:
        obj = json.loads(body)
    except ValueError:
        return False
    return isinstance(obj, dict) and obj.get("kind") == "Status"


def _translate(ref: ClaimRef, status: int, reason: str, body: bytes | None = None) -> Exception:
    """The status policy every service shares (mockaccel_common.kube), in the agent's error tree."""
    what = f"ResourceClaim {ref.namespace}/{ref.name}"
    outcome = classify_status(status)
    if outcome is ApiOutcome.NOT_FOUND:
        if body is not None and not _is_status(body):
            # A server without resource.k8s.io/v1 answers a plain-text 404, not "claim not found".
            return ApiUnavailableError(f"the API server does not serve resource.k8s.io/v1; {MATRIX_HINT}")
        return ClaimNotFoundError(f"{what} not found")
    if outcome is ApiOutcome.REFUSED:
        return ApiUnavailableError(f"reading {what} was refused ({status} {reason}); check the agent's RBAC")
    if outcome is ApiOutcome.RETRY:
        return ApiUnavailableError(f"the API server failed reading {what} ({status} {reason})", delay=2.0)
    return ClaimError(f"reading {what} failed ({status} {reason})")


class ClaimReader:
    """Implements preparing.ClaimSource against the API server."""

    def __init__(self, api: ApiClient, *, timeout: float) -> None:
        self._api = api
        self._timeout = timeout

    async def get(self, ref: ClaimRef) -> ClaimAllocation:
        try:
            # Without preloading the client returns the raw aiohttp response.
            response: Any = await self._api.call_api(
                CLAIM_PATH,
                "GET",
                path_params={"namespace": ref.namespace, "name": ref.name},
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=self._timeout,
            )
            try:
                body = await response.read()
                status, reason = response.status, str(response.reason or "")
            finally:
                response.release()
        except ApiException as exc:
            raw: Any = exc.body
            body = raw if isinstance(raw, bytes) else str(raw or "").encode()
            raise _translate(ref, int(exc.status or 0), str(exc.reason or ""), body) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ApiUnavailableError(f"the API server is unreachable: {exc!r}") from exc
        if not 200 <= status <= 299:
            raise _translate(ref, status, reason, body)
        try:
            obj: Any = json.loads(body)
        except ValueError as exc:
            raise ApiUnavailableError("the API server sent a body that is not JSON") from exc
        return ClaimAllocation.from_object(obj)
