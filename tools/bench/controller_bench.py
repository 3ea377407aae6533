"""Benchmark of the controller against a loopback control plane; prints numbers (not a test).

Run from the repo root (MOCKACCEL_KUBE_BIN set, e.g. from tools/provision/kubernetes.sh):
    PYTHONPATH=libs/mockaccel-common:libs/mockaccel-testing:services/controller python tools/bench/controller_bench.py

Measures (goals from issue 4):
  latency   sysfs change -> slice visible in the API            (<= 1 s)
  publish   1,024 devices on one node, start -> all visible     (<= 2 s)
  idle      API writes during 10 idle resync periods            (0)
  rss       resident memory of an idle controller process       (<= 64 MiB)
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mockaccel_common.simulator.engine import SimulatedNode
from mockaccel_common.simulator.topology import loads_topology
from mockaccel_testing import ControlPlane, Settings, admin_client, create_node
from mockaccel_testing.controller import (
    WriteCounter,
    controller_settings,
    list_slices,
    running_controller,
)
from mockaccel_testing.polling import wait_until

RESYNC = 0.5


def big_topology(name: str, pfs: int = 128) -> str:
    """``pfs`` PFs with 7 VFs each over 14 NUMA nodes (<= 15 PFs per node): 1,024 functions for 128."""
    lines = [f'[[node]]\nname = "{name}"']
    for numa in range(14):
        count = pfs // 14 + (1 if numa < pfs % 14 else 0)
        if count == 0:
            continue
        lines.append(f'[[node.pf]]\nnuma_node = {numa}\ncount = {count}\ntotal_vfs = 7\nvf_memory = "2Gi"')
    return "\n".join(lines) + "\n"


async def bench(plane: ControlPlane, work: Path) -> None:
    async with admin_client(plane.kubeconfig) as kube:
        # 1,024 devices on one node
        node = "bench-big"
        await create_node(kube, node)
        sim = SimulatedNode.create(work / node, loads_topology(big_topology(node)).node(node))
        for pf in sorted({p.name for p in sim.node.pfs}):
            sim.write(pf, "sriov_numvfs", "7")
        settings = controller_settings(node, sim.root, plane.kubeconfig, "--resync-interval", str(RESYNC))

        async def count() -> int | None:
            slices = await list_slices(kube, node)
            n = sum(len(s["spec"]["devices"]) for s in slices)
            return n if n == 1024 else None

        started = time.perf_counter()
        async with running_controller(settings):
            await wait_until("1,024 devices", count, 60)
            publish = time.perf_counter() - started
            print(f"publish 1024 devices: {publish:.2f} s ({len(await list_slices(kube, node))} slices)")

            # idle writes over 10 resync periods
            async with WriteCounter(kube, node) as counter:
                deadline = time.perf_counter() + 10 * RESYNC
                while time.perf_counter() < deadline:
                    await asyncio.sleep(RESYNC / 5)
                await counter.barrier()
                print(f"API writes during 10 idle resyncs ({RESYNC} s each): {counter.writes}")

        # latency, with the default resync (a 0.5 s resync keeps a 1,024-device scan always running)
        settings = controller_settings(node, sim.root, plane.kubeconfig)
        async with running_controller(settings):
            await wait_until("1,024 devices", count, 60)
            # latency: a PF disables its VFs, the slice shows it
            samples = []
            for pf in ["mock0", "mock20", "mock40", "mock60", "mock80"]:
                t0 = time.perf_counter()
                sim.write(pf, "sriov_numvfs", "0")

                async def gone(pf: str = pf) -> bool:
                    names = {d["name"] for s in await list_slices(kube, node) for d in s["spec"]["devices"]}
                    return f"{pf}v0" not in names

                await wait_until(f"{pf} VFs gone", gone, 10)
                samples.append(time.perf_counter() - t0)
            print(
                f"sysfs change -> slice visible: median {statistics.median(samples) * 1000:.0f} ms, "
                f"max {max(samples) * 1000:.0f} ms (n={len(samples)}, 1,024-device node)"
            )

        # RSS of an idle controller process (small node)
        small = "bench-rss"
        await create_node(kube, small)
        sim2 = SimulatedNode.create(work / small, loads_topology(big_topology(small, 4)).node(small))
        proc = subprocess.Popen(  # noqa: ASYNC101 - the measured process, started once
            [sys.executable, "-m", "mockaccel_controller", "--node-name", small, "--sysfs-root", str(sim2.root),
             "--kubeconfig", str(plane.kubeconfig), "--require-agent", "false", "--resync-interval", str(RESYNC)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        )
        try:
            assert proc.stdout is not None
            seen: list[bytes] = []
            while b'"ready"' not in (line := proc.stdout.readline()):
                if not line:
                    tail = b"".join(seen[-20:]).decode(errors="replace")
                    raise SystemExit(f"the controller exited with {proc.wait()} before it was ready:\n{tail}")
                seen.append(line)
            await asyncio.sleep(5 * RESYNC)  # idle: a few resyncs have run
            status = Path(f"/proc/{proc.pid}/status").read_text()
            rss = next(line for line in status.splitlines() if line.startswith("VmRSS"))
            hwm = next(line for line in status.splitlines() if line.startswith("VmHWM"))
            print(f"idle controller process: {rss.split(':')[1].strip()} RSS, peak {hwm.split(':')[1].strip()}")
        finally:
            proc.terminate()
            proc.wait(10)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plane = ControlPlane.from_settings(Settings.from_env(), work / "cp")
        plane.start()
        try:
            asyncio.run(bench(plane, work))
        finally:
            plane.stop()


if __name__ == "__main__":
    main()
