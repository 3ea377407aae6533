"""The support matrix (docs/versions.md) against the real API server of the test-bed.

One control plane is built per run; the matrix lists only versions that are
tested this way, so this asserts that the server under test is one of them and
serves what every part of mock-accel speaks.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient, VersionApi

from mockaccel_common.versions import RESOURCE_API_VERSION, SUPPORTED_KUBERNETES_MINORS, is_supported

pytestmark = pytest.mark.asyncio


async def test_the_api_server_under_test_is_in_the_support_matrix(kube: ApiClient) -> None:
    version = await VersionApi(kube).get_code()
    assert is_supported(version.git_version), f"{version.git_version} is not in {SUPPORTED_KUBERNETES_MINORS}"
    group: Any = await kube.call_api(
        "/apis/resource.k8s.io",
        "GET",
        header_params={"Accept": "application/json"},
        response_types_map={200: "object"},
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )
    served = [v["version"] for v in group["versions"]]
    assert RESOURCE_API_VERSION in served
    assert group["preferredVersion"]["version"] == RESOURCE_API_VERSION


@pytest.mark.parametrize(
    ("git_version", "supported"),
    [("v1.36.3", True), ("v1.36.0-rc.1+abc", True), ("v1.35.2", False), ("v1.33.0", False), ("junk", False)],
)
async def test_matrix_parsing(git_version: str, supported: bool) -> None:
    assert is_supported(git_version) is supported
