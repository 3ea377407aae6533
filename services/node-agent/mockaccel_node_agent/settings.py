"""Settings of the node agent (flags override environment variables)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mockaccel_common.errors import SettingsError
from mockaccel_common.plugin_socket import DEFAULT_DRIVER, DEFAULT_PLUGIN_DIR, dra_socket
from mockaccel_common.settings import BaseSettings, setting
from mockaccel_node_agent.adapters.faults import POINTS

# sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107


@dataclass(frozen=True)
class Settings(BaseSettings):
    """mock-accel node agent: the kubelet DRA plugin of this node."""

    node_name: str = setting("", env="NODE_NAME", help="Kubernetes node this instance serves (fieldRef spec.nodeName).")
    pod_uid: str = setting(
        "",
        env="POD_UID",
        help="Own pod UID (fieldRef metadata.uid); enables per-pod socket names for rolling updates (kubelet >= 1.33).",
    )
    driver_name: str = setting(DEFAULT_DRIVER, env="MOCKACCEL_DRIVER_NAME", help="DRA driver name.")
    sysfs_root: Path = setting(Path("/sys"), env="MOCKACCEL_SYSFS_ROOT", help="Root of the sysfs tree.")
    registry_dir: Path = setting(
        Path("/var/lib/kubelet/plugins_registry"), env="MOCKACCEL_REGISTRY_DIR", help="kubelet plugin registry."
    )
    plugin_dir: Path = setting(
        DEFAULT_PLUGIN_DIR,
        env="MOCKACCEL_PLUGIN_DIR",
        help="Directory of the DRA socket, the checkpoint and the lock (shared with the controller).",
    )
    cdi_dir: Path = setting(Path("/var/run/cdi"), env="MOCKACCEL_CDI_DIR", help="Dynamic CDI spec directory.")
    device_dir: Path = setting(
        Path("/dev"),
        env="MOCKACCEL_DEVICE_DIR",
        help="Host directory of the device nodes (CDI hostPath); a simulated node's <root>/dev (docs/abi.md 8.5).",
    )
    cdi_sysfs_dir: Path = setting(
        Path("/sys/class/mock-accel"),
        env="MOCKACCEL_CDI_SYSFS_DIR",
        help="Container dir of each function's sysfs dir (MOCK_ACCEL_<DEV>_SYSFS); outside /sys if simulated.",
    )
    kubeconfig: Path | None = setting(
        None, env="KUBECONFIG", help="kubeconfig file; empty: the pod's service account (in-cluster)."
    )
    api_timeout: float = setting(10.0, env="MOCKACCEL_API_TIMEOUT", help="Timeout of one ResourceClaim GET.", unit="s")
    claim_fetch_concurrency: int = setting(
        8,
        env="MOCKACCEL_CLAIM_FETCH_CONCURRENCY",
        help="At most this many ResourceClaim GETs of one prepare request run at once.",
    )
    health_stream: bool = setting(
        True,
        env="MOCKACCEL_HEALTH_STREAM",
        help="Serve v1alpha1.DRAResourceHealth (NodeWatchResources) and advertise it to kubelet.",
    )
    health_check_timeout: int = setting(
        0,
        env="MOCKACCEL_HEALTH_CHECK_TIMEOUT",
        help="health_check_timeout_seconds sent with each device (kubelet 1.35+); 0: kubelet's default.",
        unit="s",
    )
    health_resend_interval: float = setting(
        10.0,
        env="MOCKACCEL_HEALTH_RESEND_INTERVAL",
        help=(
            "Resend the complete device-health list this often even when nothing changed; kubelet marks a device"
            " Unknown when its last list is older than its health timeout (30 s by default)."
        ),
        unit="s",
    )
    listen_host: str = setting(
        "0.0.0.0", env="MOCKACCEL_LISTEN_HOST", help="Address of the liveness and metrics endpoints."
    )
    health_port: int = setting(
        51515,
        env="MOCKACCEL_HEALTH_PORT",
        help="TCP port of grpc.health.v1 liveness (positive: that port, 0: random, negative: off).",
    )
    metrics_port: int = setting(
        9402,
        env="MOCKACCEL_METRICS_PORT",
        help="TCP port of Prometheus /metrics (positive: that port, 0: random, negative: off).",
    )
    fault_point: str = setting(
        "",
        env="MOCKACCEL_FAULT_POINT",
        help="TESTS ONLY: SIGKILL the agent at this step (e.g. prepare:after_sysfs); see docs/node-agent.md.",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.node_name:
            raise SettingsError("node_name is required (flag --node-name or env NODE_NAME)")
        if self.fault_point and self.fault_point not in POINTS:
            raise SettingsError(f"fault_point {self.fault_point!r} is unknown; known: {', '.join(POINTS)}")
        if not 0 < self.health_resend_interval <= 25:
            raise SettingsError(
                "health_resend_interval must be in (0, 25] s (well inside kubelet's 30 s timeout),"
                f" got {self.health_resend_interval}"
            )
        if self.claim_fetch_concurrency < 1:
            raise SettingsError(f"claim_fetch_concurrency must be at least 1, got {self.claim_fetch_concurrency}")
        if self.api_timeout <= 0:
            raise SettingsError(f"api_timeout must be positive, got {self.api_timeout}")
        for path in (self.registration_socket, self.dra_socket):
            if len(str(path).encode()) > _MAX_SOCKET_PATH:
                raise SettingsError(f"socket path {path} is longer than {_MAX_SOCKET_PATH} bytes")

    @property
    def registration_socket(self) -> Path:
        """``<driver>-reg.sock``, or ``<driver>-<podUID>-reg.sock`` during rolling updates."""
        stem = f"{self.driver_name}-{self.pod_uid}" if self.pod_uid else self.driver_name
        return self.registry_dir / f"{stem}-reg.sock"

    @property
    def dra_socket(self) -> Path:
        return dra_socket(self.plugin_dir, self.pod_uid)
