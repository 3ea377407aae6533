"""The one supported-version matrix of mock-accel (docs/versions.md).

Every part follows it: the controller writes ResourceSlices and the node agent
reads ResourceClaims through ``resource.k8s.io/v1``, kubelet talks to the
agent through ``v1.DRAPlugin`` (``v1beta1`` is served as well), and the e2e
tests assert that the test-bed's API server is one of these versions. Only
versions that are tested against a real API server of that version are listed.
"""

from __future__ import annotations

SUPPORTED_KUBERNETES_MINORS = ("1.36",)
RESOURCE_API_VERSION = "v1"
MATRIX_HINT = (
    f"mock-accel supports Kubernetes {', '.join(SUPPORTED_KUBERNETES_MINORS)} "
    f"(resource.k8s.io/{RESOURCE_API_VERSION}); see docs/versions.md"
)


def is_supported(git_version: str) -> bool:
    """Whether an API server's ``gitVersion`` (``v1.36.3``, ``v1.36.0-rc.1+abc``) is in the matrix."""
    parts = git_version.lstrip("v").split(".")
    return len(parts) >= 2 and f"{parts[0]}.{parts[1]}" in SUPPORTED_KUBERNETES_MINORS
