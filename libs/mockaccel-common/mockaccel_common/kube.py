"""The Kubernetes client side shared by the controller and the node agent.

One loader: a kubeconfig file when one is given, else the pod's service
account. One status policy: what an HTTP status from the API server means for
the caller, so both services react alike (each maps the outcome to its own
error tree):

    404            NOT_FOUND   the object does not exist
    409            CONFLICT    stored state changed under us: re-read, re-plan
    410            EXPIRED     a watch's resourceVersion is too old: re-list at once
    401, 403       REFUSED     retried with backoff and logged loudly: RBAC is created together with
                               the pods by `helm install`, and the authorizer (or a rotated token) can
                               lag for seconds; an exit would only add CrashLoopBackOff delays
    429, 5xx, 0    RETRY       the server is overloaded, restarting or unreachable
    anything else  PERMANENT   the request itself is wrong (400, 422, …): retrying cannot help

kubernetes_asyncio is imported lazily (inside the functions), so importing
this module costs nothing and mockaccel_common stays importable without the
client library (the import contracts allow only this module to use it).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mockaccel_common.errors import InvalidInputError


class KubeconfigError(InvalidInputError):
    """Neither the kubeconfig file nor the in-cluster service account gives a usable client."""


class ApiOutcome(enum.Enum):
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    EXPIRED = "expired"
    REFUSED = "refused"
    RETRY = "retry"
    PERMANENT = "permanent"


def classify_status(status: int) -> ApiOutcome:
    """What an API server HTTP status means for the caller (table in the module docstring)."""
    if status == 404:
        return ApiOutcome.NOT_FOUND
    if status == 409:
        return ApiOutcome.CONFLICT
    if status == 410:
        return ApiOutcome.EXPIRED
    if status in (401, 403):
        return ApiOutcome.REFUSED
    if status == 429 or status >= 500 or status == 0:
        return ApiOutcome.RETRY
    return ApiOutcome.PERMANENT


@asynccontextmanager
async def api_client(kubeconfig: Path | None, *, user_agent: str) -> AsyncIterator[Any]:
    """A kubernetes_asyncio ApiClient from ``kubeconfig``, or the in-cluster service account when None."""
    from kubernetes_asyncio import config
    from kubernetes_asyncio.client import ApiClient, Configuration

    configuration = Configuration()
    try:
        if kubeconfig is not None:
            await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        else:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError, ValueError) as exc:
        where = kubeconfig or "the in-cluster service account"
        raise KubeconfigError(f"cannot configure the Kubernetes client from {where}: {exc}") from exc
    client = ApiClient(configuration=configuration)
    client.user_agent = user_agent
    try:
        yield client
    finally:
        await client.close()
