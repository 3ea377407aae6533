"""Settings of the node agent (flags override environment variables)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mockaccel_common.errors import SettingsError
from mockaccel_common.settings import BaseSettings, setting


@dataclass(frozen=True)
class Settings(BaseSettings):
    """mock-accel node agent: the kubelet DRA plugin of this node."""

    node_name: str = setting("", env="NODE_NAME", help="Kubernetes node this instance serves (fieldRef spec.nodeName).")
    pod_uid: str = setting("", env="POD_UID", help="Own pod UID; enables per-pod sockets for rolling updates.")
    driver_name: str = setting("mock-accel.example.com", env="MOCKACCEL_DRIVER_NAME", help="DRA driver name.")
    sysfs_root: Path = setting(Path("/sys"), env="MOCKACCEL_SYSFS_ROOT", help="Root of the sysfs tree.")
    registry_dir: Path = setting(
        Path("/var/lib/kubelet/plugins_registry"), env="MOCKACCEL_REGISTRY_DIR", help="kubelet plugin registry."
    )
    plugin_dir: Path = setting(
        Path("/var/lib/kubelet/plugins/mock-accel.example.com"),
        env="MOCKACCEL_PLUGIN_DIR",
        help="Directory of the DRA socket and the checkpoint.",
    )
    cdi_dir: Path = setting(Path("/var/run/cdi"), env="MOCKACCEL_CDI_DIR", help="Dynamic CDI spec directory.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.node_name:
            raise SettingsError("node_name is required (flag --node-name or env NODE_NAME)")
