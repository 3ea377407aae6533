"""Settings of the controller (flags override environment variables)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mockaccel_common.errors import SettingsError
from mockaccel_common.settings import BaseSettings, setting


@dataclass(frozen=True)
class Settings(BaseSettings):
    """mock-accel controller: keeps this node's ResourceSlices equal to its devices."""

    node_name: str = setting("", env="NODE_NAME", help="Kubernetes node this instance serves (fieldRef spec.nodeName).")
    driver_name: str = setting("mock-accel.example.com", env="MOCKACCEL_DRIVER_NAME", help="DRA driver name.")
    sysfs_root: Path = setting(Path("/sys"), env="MOCKACCEL_SYSFS_ROOT", help="Root of the sysfs tree to scan.")
    resync_interval: float = setting(
        300.0, env="MOCKACCEL_RESYNC_INTERVAL", help="Full rescan period, a safety net behind events.", unit="s"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.node_name:
            raise SettingsError("node_name is required (flag --node-name or env NODE_NAME)")
        if self.resync_interval <= 0:
            raise SettingsError(f"resync_interval must be positive, got {self.resync_interval}")
