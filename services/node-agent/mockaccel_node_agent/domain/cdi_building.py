"""The CDI spec of a prepared claim (docs/abi.md §8.4), built from device models.

One transient spec per claim; device names carry the claim UID so that a
runtime's CDI cache can never hand out a stale entry of an earlier claim.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mockaccel_common.cdi import (
    CDI_KIND,
    CdiDevice,
    CdiSpec,
    DeviceNode,
    Mount,
    device_env,
    env_prefix,
    transient_spec_name,
)
from mockaccel_common.model import Device

SYSFS_CLASS_PATH = "/sys/class/mock-accel"
HOST_DEVICE_DIR = "/dev"


@dataclass(frozen=True)
class CdiLayout:
    """Where a device's files come from on the host and where the container sees them.

    device_dir: host directory of the character device nodes (``/dev`` with the
        driver; a simulated node's ``<root>/dev``). The container path is always
        ``/dev/<name>``.
    sysfs_dir: container directory under which each function's sysfs directory is
        mounted (``<sysfs_dir>/<name>``); advertised as ``MOCK_ACCEL_<DEV>_SYSFS``.
        ``/sys/class/mock-accel`` works where the driver's class exists in the
        container's sysfs; a simulated node needs a path outside ``/sys``.
    """

    device_dir: str = HOST_DEVICE_DIR
    sysfs_dir: str = SYSFS_CLASS_PATH


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


def claim_spec(claim_uid: str, sources: Sequence[DeviceSource], layout: CdiLayout | None = None) -> CdiSpec:
    layout = layout or CdiLayout()
    devices = []
    for source in sources:
        name = source.device.name
        sysfs_path = f"{layout.sysfs_dir.rstrip('/')}/{name}"
        devices.append(
            CdiDevice(
                name=cdi_device_name(claim_uid, name),
                env=(
                    *device_env(source.device),
                    f"{env_prefix(name)}SYSFS={sysfs_path}",
                    *((ADMIN_ACCESS_ENV,) if source.admin_access else ()),
                ),
                device_nodes=(DeviceNode(path=f"/dev/{name}", host_path=f"{layout.device_dir.rstrip('/')}/{name}"),),
                mounts=(
                    Mount(
                        host_path=source.sysfs_dir,
                        container_path=sysfs_path,
                        options=("ro", "nosuid", "nodev", "noexec", "bind"),
                    ),
                ),
            )
        )
    return CdiSpec(kind=CDI_KIND, devices=tuple(devices))
