"""Settings of the vfio-server (flags override environment variables)."""

from __future__ import annotations

from dataclasses import dataclass

from mockaccel_common.errors import SettingsError
from mockaccel_common.settings import BaseSettings, setting


@dataclass(frozen=True)
class Settings(BaseSettings):
    """mock-accel vfio-server: one emulated PCI function on a vfio-user socket."""

    socket_path: str = setting("", env="MOCKACCEL_SOCKET", help="vfio-user socket QEMU connects to.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.socket_path:
            raise SettingsError("socket_path is required (flag --socket-path or env MOCKACCEL_SOCKET)")
