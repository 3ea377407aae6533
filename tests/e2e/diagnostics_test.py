"""A failing e2e test carries the cluster's state: the dump the pytest plugin attaches."""

from __future__ import annotations

from mockaccel_testing import ControlPlane
from mockaccel_testing.diagnostics import dump_cluster


def test_the_dump_has_every_object_kind_and_component_log(control_plane: ControlPlane) -> None:
    text = dump_cluster(control_plane)
    for query in ("get nodes", "get pods -A", "get resourceclaims -A", "get resourceslices", "get events -A"):
        assert f"===== kubectl {query}" in text
    assert "(stderr)" not in text, text[:2000]
    for component in ("etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager"):
        assert f"===== {component}.log" in text
