"""sysfs change -> slice with the real module: the controller in the emulated QEMU node; prints numbers.

Run from the repo root, after building the controller pex
(``./pants package services/controller/mockaccel_controller:controller``):
    PYTHONPATH=libs/mockaccel-common:libs/mockaccel-testing:libs/mockaccel-node:services/controller \\
        python3 tools/bench/controller_guest_bench.py [--changes 20]

The guest (mockaccel_testing.guest_controller) runs the controller's pex
against the real /sys with uevents, resync one hour, and a loopback API server
on the host. Each change alternates: VFs of mock0 enabled (2) or disabled, and
PF mock1 unbound from the driver or bound again. Printed per kind and overall,
median and p99 of:
  host    handing the command to the guest (share file) -> the watch on the host
          delivers the controller's last slice write for it (includes the guest's
          command pickup, <= 20 ms + a 9p round trip)
  guest   the command's start in the guest (its clock) -> the controller's log line
          of its last slice write for it (the publish call returned)
Goal (issue 13 item 6): <= 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mockaccel_testing import ControlPlane, Settings, admin_client, create_node
from mockaccel_testing.controller import WriteCounter, device_names, list_slices
from mockaccel_testing.guest_controller import controller_in_guest, controller_log, guest_node_topology

NODE = "guest-bench"
PEX = Path("dist/services.controller.mockaccel_controller/controller.pex")
QUIET_S = 1.0
# The guest's wall clock in ns resolution: busybox date has no %N, the Python root file system's does.
# (Its start, a chroot and one exec, counts against the change: the figure errs high.)
GUEST_CLOCK = "chroot /mnt/rootfs /bin/date +%s.%N"
WRITES = {"slice_updated", "slice_created", "slice_deleted"}


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(samples: list[float]) -> str:
    return (
        f"median {statistics.median(samples) * 1e3:.0f} ms, p99 {percentile(samples, 0.99) * 1e3:.0f} ms, "
        f"max {max(samples) * 1e3:.0f} ms (n={len(samples)})"
    )


def log_time(line: dict[str, object]) -> float:
    return datetime.datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00")).timestamp()


async def bench(plane: ControlPlane, work: Path, changes: int) -> None:
    async with admin_client(plane.kubeconfig) as kube:
        await create_node(kube, NODE)

        async def devices() -> set[str]:
            return {d for names in device_names(await list_slices(kube, NODE)).values() for d in names}

        async def until(expected: set[str], within: float) -> None:
            deadline = time.monotonic() + within
            while (now := await devices()) != expected:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"slices list {sorted(now)}, expected {sorted(expected)}")
                await asyncio.sleep(0.2)

        node = guest_node_topology(NODE)
        print("booting the guest (the controller's first start under TCG takes minutes)", file=sys.stderr)
        with controller_in_guest(plane, node, PEX, work) as (_, guest, share):
            await until({"mock0", "mock1"}, 900)
            address = guest.run("basename $(readlink /sys/class/mock-accel/mock1/device)").strip()
            numvfs = "/sys/class/mock-accel/mock0/sriov_numvfs"
            steps = [
                ("enable VFs", f"echo 2 >{numvfs}", {"mock0", "mock0v0", "mock0v1", "mock1"}),
                ("disable VFs", f"echo 0 >{numvfs}", {"mock0", "mock1"}),
                ("unbind PF", f"echo {address} >/sys/bus/pci/drivers/mock-accel/unbind", {"mock0"}),
                ("bind PF", f"echo {address} >/sys/bus/pci/drivers/mock-accel/bind", {"mock0", "mock1"}),
            ]  # fmt: skip
            times: list[float] = []
            host: dict[str, list[float]] = {name: [] for name, _, _ in steps}
            in_guest: dict[str, list[float]] = {name: [] for name, _, _ in steps}
            async with WriteCounter(kube, NODE) as counter:
                counter.on_event = lambda _type, _name, _pool: times.append(time.perf_counter())
                for i in range(changes):
                    name, command, expected = steps[i % len(steps)]
                    seen = len(times)
                    logged = len(controller_log(share))
                    t0 = time.perf_counter()
                    n = guest.submit(f"{GUEST_CLOCK}\n{command}")
                    await until(expected, 120)
                    while len(times) == seen or time.perf_counter() - times[-1] < QUIET_S:
                        await asyncio.sleep(0.05)
                    host[name].append(times[-1] - t0)
                    started = float(guest.wait(n).split()[0])
                    writes = [line for line in controller_log(share)[logged:] if line.get("event") in WRITES]
                    in_guest[name].append(log_time(writes[-1]) - started)
                    print(f"  {name}: host {host[name][-1] * 1e3:.0f} ms, guest {in_guest[name][-1] * 1e3:.0f} ms",
                          file=sys.stderr)  # fmt: skip
            for name, _, _ in steps:
                print(f"{name:12s} host:  {summary(host[name])}")
                print(f"{'':12s} guest: {summary(in_guest[name])}")
            print(f"{'all':12s} host:  {summary([s for v in host.values() for s in v])}")
            print(f"{'':12s} guest: {summary([s for v in in_guest.values() for s in v])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=20)
    args = parser.parse_args()
    if not PEX.is_file():
        raise SystemExit(f"{PEX} is missing: ./pants package services/controller/mockaccel_controller:controller")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plane = ControlPlane.from_settings(Settings.from_env(), work / "cp")
        print("starting the control plane", file=sys.stderr)
        plane.start()
        try:
            asyncio.run(bench(plane, work, args.changes))
        finally:
            plane.stop()


if __name__ == "__main__":
    main()
