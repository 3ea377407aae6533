"""Settings of the controller (flags override environment variables; docs/controller.md lists them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mockaccel_common.errors import SettingsError
from mockaccel_common.plugin_socket import DEFAULT_DRIVER, DEFAULT_PLUGIN_DIR
from mockaccel_common.settings import BaseSettings, setting

API_VERSIONS = ("", "v1", "v1beta2", "v1beta1")


@dataclass(frozen=True)
class Settings(BaseSettings):
    """mock-accel controller: keeps this node's ResourceSlices equal to its devices."""

    node_name: str = setting("", env="NODE_NAME", help="Kubernetes node this instance serves (fieldRef spec.nodeName).")
    driver_name: str = setting(DEFAULT_DRIVER, env="MOCKACCEL_DRIVER_NAME", help="DRA driver name.")
    sysfs_root: Path = setting(Path("/sys"), env="MOCKACCEL_SYSFS_ROOT", help="Root of the sysfs tree to scan.")
    resync_interval: float = setting(
        300.0, env="MOCKACCEL_RESYNC_INTERVAL", help="Full rescan period, a safety net behind events.", unit="s"
    )
    uevents: bool = setting(
        True,
        env="MOCKACCEL_UEVENTS",
        help="Listen to kernel uevents (netlink) of the mock-accel subsystem: devices the kernel adds or removes.",
    )
    debounce: float = setting(
        0.1, env="MOCKACCEL_DEBOUNCE", help="Quiet time that coalesces a burst of sysfs or slice events.", unit="s"
    )
    kubeconfig: Path | None = setting(
        None, env="KUBECONFIG", help="Kubeconfig file; empty means the in-cluster service account."
    )
    resource_api_version: str = setting(
        "",
        env="MOCKACCEL_RESOURCE_API_VERSION",
        help="Force v1, v1beta2 or v1beta1 of resource.k8s.io; empty requires v1 (docs/versions.md).",
    )
    request_timeout: float = setting(
        10.0, env="MOCKACCEL_REQUEST_TIMEOUT", help="Deadline of one API request.", unit="s"
    )
    retry_initial_delay: float = setting(
        0.2, env="MOCKACCEL_RETRY_INITIAL_DELAY", help="First wait after a failed API call (then doubled).", unit="s"
    )
    retry_max_delay: float = setting(
        30.0, env="MOCKACCEL_RETRY_MAX_DELAY", help="Longest wait between API retries.", unit="s"
    )
    plugin_dir: Path = setting(
        DEFAULT_PLUGIN_DIR,
        env="MOCKACCEL_PLUGIN_DIR",
        help="The node agent's plugin directory (shared with it); slices are published only while a DRA socket "
        "there accepts connections.",
    )
    require_agent: bool = setting(
        True, env="MOCKACCEL_REQUIRE_AGENT", help="Publish only while the node agent serves (false: standalone)."
    )
    agent_check_interval: float = setting(
        2.0, env="MOCKACCEL_AGENT_CHECK_INTERVAL", help="How often the agent socket is probed.", unit="s"
    )
    remove_on_shutdown: bool = setting(
        False, env="MOCKACCEL_REMOVE_ON_SHUTDOWN", help="Delete this node's slices when stopping (within the drain)."
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.node_name:
            raise SettingsError("node_name is required (flag --node-name or env NODE_NAME)")
        for name in (
            "resync_interval",
            "request_timeout",
            "retry_initial_delay",
            "retry_max_delay",
            "agent_check_interval",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be positive, got {getattr(self, name)}")
        if self.debounce < 0:
            raise SettingsError(f"debounce must not be negative, got {self.debounce}")
        if self.resource_api_version not in API_VERSIONS:
            raise SettingsError("resource_api_version must be one of v1, v1beta2, v1beta1 or empty")
