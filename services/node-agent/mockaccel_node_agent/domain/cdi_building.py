"""The CDI spec of a prepared claim (docs/abi.md §8.4), built from device models.

One transient spec per claim; device names carry the claim UID so that a
runtime's CDI cache can never hand out a stale entry of an earlier claim.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mockaccel_common.cdi import CDI_KIND, CdiDevice, CdiSpec, DeviceNode, Mount, device_env, transient_spec_name
from mockaccel_common.model import Device

SYSFS_CLASS_PATH = "/sys/class/mock-accel"


# Set on the container edits of an admin-access device, as the reference driver does.
ADMIN_ACCESS_ENV = "DRA_ADMIN_ACCESS=true"


@dataclass(frozen=True)
class DeviceSource:
    """A device as read from sysfs, with the real (symlink-free) path of its sysfs directory.

    ``admin_access``: prepared for an admin-access (monitoring) claim.
    """

    device: Device
    sysfs_dir: str
    admin_access: bool = False


def spec_file_name(claim_uid: str) -> str:
    return transient_spec_name(CDI_KIND, claim_uid)


def cdi_device_name(claim_uid: str, device: str) -> str:
    return f"{claim_uid}-{device}"


def cdi_device_id(claim_uid: str, device: str) -> str:
    return f"{CDI_KIND}={cdi_device_name(claim_uid, device)}"


def is_our_spec(file_name: str) -> bool:
    """Whether a file in the CDI directory is one of our transient specs."""
    prefix = spec_file_name("").removesuffix(".json")
    return file_name.startswith(prefix) and file_name.endswith(".json") and len(file_name) > len(prefix) + 5


def claim_spec(claim_uid: str, sources: Sequence[DeviceSource]) -> CdiSpec:
    devices = []
    for source in sources:
        name = source.device.name
        devices.append(
            CdiDevice(
                name=cdi_device_name(claim_uid, name),
                env=device_env(source.device) + ((ADMIN_ACCESS_ENV,) if source.admin_access else ()),
                device_nodes=(DeviceNode(path=f"/dev/{name}", host_path=f"/dev/{name}"),),
                mounts=(
                    Mount(
                        host_path=source.sysfs_dir,
                        container_path=f"{SYSFS_CLASS_PATH}/{name}",
                        options=("ro", "nosuid", "nodev", "noexec", "bind"),
                    ),
                ),
            )
        )
    return CdiSpec(kind=CDI_KIND, devices=tuple(devices))
