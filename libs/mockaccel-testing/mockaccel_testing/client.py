"""kubernetes_asyncio clients for the admin and for impersonated identities.

Impersonation (the admin cert plus Impersonate-* headers) lets a test act as any user or
service account without minting tokens, which is how RBAC rules of a driver are checked.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient, Configuration


async def _configuration(kubeconfig: Path) -> Configuration:
    cfg = Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    return cfg


async def new_admin_client(kubeconfig: Path) -> ApiClient:
    """An ApiClient with the kubeconfig's (admin) identity; the caller closes it."""
    return ApiClient(configuration=await _configuration(kubeconfig))


@asynccontextmanager
async def admin_client(kubeconfig: Path) -> AsyncIterator[ApiClient]:
    """Yield an admin ApiClient and close its connection pool afterwards."""
    api = await new_admin_client(kubeconfig)
    try:
        yield api
    finally:
        await api.close()


async def impersonate(
    kubeconfig: Path, user: str, groups: Sequence[str] = (), extra: Mapping[str, str] | None = None
) -> ApiClient:
    """An ApiClient that acts as `user` (and `groups`, and `extra` user info); the caller closes it.

    ``extra`` is what a bound service-account token adds, e.g.
    ``{"authentication.kubernetes.io/node-name": node}``; its keys go URL-escaped
    into ``Impersonate-Extra-<key>`` headers, as the API server expects.

    The headers go on the aiohttp session rather than ApiClient.default_headers because
    Kubernetes wants one Impersonate-Group header per group and ApiClient merges headers
    through a plain dict, which keeps only one value per name.
    """
    api = await new_admin_client(kubeconfig)
    headers = api.rest_client.pool_manager.headers
    headers["Impersonate-User"] = user
    for group in groups:
        headers.add("Impersonate-Group", group)
    for key, value in (extra or {}).items():
        headers.add(f"Impersonate-Extra-{urllib.parse.quote(key, safe='')}", value)
    return api


async def service_account_client(kubeconfig: Path, namespace: str, name: str) -> ApiClient:
    """An ApiClient acting as service account `namespace/name`.

    No groups are sent: for a service-account user the apiserver then adds
    system:serviceaccounts and system:serviceaccounts:<namespace> itself, as for a real token.
    """
    return await impersonate(kubeconfig, f"system:serviceaccount:{namespace}:{name}")
