"""The controller in the emulated node follows the real driver through kernel uevents (issue 13 item 6).

QEMU boots the node with mock-accel.ko; the controller runs in the guest
against the real /sys (its own pex, resync set to an hour, so only events can
explain what it publishes) and writes slices to this session's API server on
the host. Each change is made by the kernel: VFs enabled and disabled through
``sriov_numvfs``, a PF unbound from the driver and bound again. The slices
must follow each one. On real sysfs inotify reports none of these class
devices appearing or vanishing: only the uevent listener can.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import pytest
from kubernetes_asyncio.client import ApiClient

from mockaccel_testing import ControlPlane, create_node
from mockaccel_testing.controller import device_names, list_slices
from mockaccel_testing.guest_controller import controller_in_guest, controller_log, guest_node_topology
from mockaccel_testing.polling import wait_until

pytestmark = pytest.mark.asyncio
NODE = "guest-node"
# Built by Pants next to the test (runtime_package_dependencies in BUILD).
CONTROLLER_PEX = Path("services.controller.mockaccel_controller/controller.pex")
# Booting, unpacking the pex and importing the client take minutes under TCG on a loaded machine.
FIRST_PUBLISH_S = 400
CHANGE_S = 120  # far below the resync (3600 s): only an event can make the controller see a change


async def published(kube: ApiClient) -> set[str]:
    return {d for names in device_names(await list_slices(kube, NODE)).values() for d in names}


async def wait_devices(kube: ApiClient, expected: set[str], within: float) -> None:
    async def matches() -> bool:
        return await published(kube) == expected

    await wait_until(f"slices listing exactly {sorted(expected)}", matches, within, interval=0.2)


@pytest.mark.timeout(FIRST_PUBLISH_S + 6 * CHANGE_S + 300)
async def test_slices_follow_vfs_and_pfs_of_the_real_driver(
    control_plane: ControlPlane, kube: ApiClient, tmp_path: Path
) -> None:
    assert CONTROLLER_PEX.is_file(), f"{CONTROLLER_PEX} is missing (cwd {os.getcwd()})"
    await create_node(kube, NODE)
    node = guest_node_topology(NODE)
    with controller_in_guest(control_plane, node, CONTROLLER_PEX, tmp_path) as (_, guest, share):
        try:
            await wait_devices(kube, {"mock0", "mock1"}, FIRST_PUBLISH_S)

            guest.run("echo 2 >/sys/class/mock-accel/mock0/sriov_numvfs")
            await wait_devices(kube, {"mock0", "mock0v0", "mock0v1", "mock1"}, CHANGE_S)
            guest.run("echo 0 >/sys/class/mock-accel/mock0/sriov_numvfs")
            await wait_devices(kube, {"mock0", "mock1"}, CHANGE_S)

            address = guest.run("basename $(readlink /sys/class/mock-accel/mock1/device)").strip()
            guest.run(f"echo {address} >/sys/bus/pci/drivers/mock-accel/unbind")
            await wait_devices(kube, {"mock0"}, CHANGE_S)
            guest.run(f"echo {address} >/sys/bus/pci/drivers/mock-accel/bind")
            await wait_devices(kube, {"mock0", "mock1"}, CHANGE_S)
        except BaseException:
            print("--- guest controller log ---\n" + (share / "controller.log").read_text(errors="replace")[-8000:])
            raise

    passes = [line for line in controller_log(share) if line.get("event") == "reconciled"]
    reasons = {str(r) for line in passes for r in cast(list[object], line.get("reasons", []))}
    assert {"uevent_add", "uevent_remove"} <= reasons, reasons
    assert "resync" not in reasons
    # Each change re-read only the devices it named, never a full scan after the first pass.
    assert [line["read"] for line in passes].count("all") == 1, [(p["reasons"], p["read"]) for p in passes]
