"""Prometheus metrics of the node agent, on a registry owned by the app (no module globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

NAMESPACE = "mockaccel_node_agent"
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.prepare_claims = Counter(
            "prepare_claims", "Claims answered by NodePrepareResources.", ["result"], namespace=NAMESPACE, registry=r
        )
        self.prepare_duration = Histogram(
            "prepare_claim_duration_seconds",
            "Time to prepare one claim, including the ResourceClaim GET.",
            namespace=NAMESPACE,
            registry=r,
            buckets=_BUCKETS,
        )
        self.unprepare_claims = Counter(
            "unprepare_claims",
            "Claims answered by NodeUnprepareResources.",
            ["result"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.unprepare_duration = Histogram(
            "unprepare_claim_duration_seconds",
            "Time to unprepare one claim.",
            namespace=NAMESPACE,
            registry=r,
            buckets=_BUCKETS,
        )
        self.errors = Counter(
            "errors", "Errors by kind (the error class name).", ["kind"], namespace=NAMESPACE, registry=r
        )
        self.prepared_claims = Gauge("prepared_claims", "Claims in the checkpoint.", namespace=NAMESPACE, registry=r)
        self.registered = Gauge(
            "registered",
            "1 after kubelet confirmed the registration, 0 after it reported a failure.",
            namespace=NAMESPACE,
            registry=r,
        )
        self.health_watchers = Gauge(
            "health_watchers", "Open NodeWatchResources streams.", namespace=NAMESPACE, registry=r
        )
        self.health_changes = Counter(
            "health_lists", "Device-health lists published (one per change).", namespace=NAMESPACE, registry=r
        )
        self.health_lists = Counter(
            "health_lists_sent",
            "Device-health lists sent on NodeWatchResources streams after the first (changes and periodic resends).",
            namespace=NAMESPACE,
            registry=r,
        )
        self.rejected_requests = Counter(
            "rejected_requests",
            "gRPC requests or connections refused as malformed or over a limit.",
            ["reason"],
            namespace=NAMESPACE,
            registry=r,
        )
