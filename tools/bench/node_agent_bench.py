"""Benchmark of NodePrepareResources against the loopback API server (tools/bench/node_agent_bench.sh).

Runs the real agent process on a simulated node of 160 devices (20 PFs with
7 VFs each), with claims stored in a real kube-apiserver (their allocation
written through the status subresource, so no scheduler time is measured).
Prints p50/p99 of NodePrepareResources for 1- and 8-device claims, 200
sequential calls (each followed by an untimed unprepare) and 20 concurrent
calls (5 rounds), and the agent's RSS idle and under that load. Needs
MOCKACCEL_KUBE_BIN (tools/provision/kubernetes.sh).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from kubernetes_asyncio.client import CoreV1Api, ResourceV1Api

from mockaccel_common.simulator.engine import SimulatedNode
from mockaccel_node_agent.domain.claims import ClaimRef
from mockaccel_testing import ControlPlane, Settings, admin_client, create_node
from mockaccel_testing.kubelet_client import KubeletClient
from mockaccel_testing.node_agent import DRIVER, agent_dirs, simulated_node
from mockaccel_testing.service_process import service_process

SEQUENTIAL = 200
CONCURRENT = 20
ROUNDS = 5


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def report(label: str, samples: list[float]) -> None:
    ms = [s * 1000 for s in samples]
    print(
        f"{label:<34} n={len(ms):<4} p50={percentile(ms, 0.5):7.2f} ms  p99={percentile(ms, 0.99):7.2f} ms"
        f"  mean={statistics.fmean(ms):7.2f} ms"
    )


def _wait_for_socket(path: Path, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.05)


async def make_claims(api: Any, ns: str, node: str, groups: list[list[str]]) -> list[ClaimRef]:
    resource = ResourceV1Api(api)
    refs = []
    for index, devices in enumerate(groups):
        name = f"c{index}-{len(devices)}"
        body = {
            "metadata": {"name": name},
            "spec": {
                "devices": {"requests": [{"name": "r", "exactly": {"deviceClassName": "x", "count": len(devices)}}]}
            },
        }
        created = await resource.create_namespaced_resource_claim(ns, body)  # type: ignore[arg-type]
        pool = {d: f"{node}/numa{0 if int(d[4:].split('v')[0]) < 10 else 1}" for d in devices}
        status = {
            "status": {
                "allocation": {
                    "devices": {
                        "results": [
                            {"request": "r", "driver": DRIVER, "pool": pool[d], "device": d} for d in devices
                        ]
                    }
                }
            }
        }
        await resource.patch_namespaced_resource_claim_status(name, ns, status)
        refs.append(ClaimRef(ns, created.metadata.uid, name))
    return refs


async def main() -> None:
    settings = Settings.from_env()
    work = Path(tempfile.mkdtemp(prefix="na-bench-"))
    plane = ControlPlane.from_settings(settings, work)
    await asyncio.to_thread(plane.start)
    try:
        await bench(plane)
    finally:
        await asyncio.to_thread(plane.stop)


async def bench(plane: ControlPlane) -> None:
    node, ns = f"bench-{uuid.uuid4().hex[:6]}", "bench"
    with agent_dirs("na-b-") as dirs:
        simulated_node(dirs, node, pfs=10, numa_nodes=2, total_vfs=7)
        sim = SimulatedNode.open(dirs.sysfs)
        for pf in range(20):
            await asyncio.to_thread(sim.write, f"mock{pf}", "sriov_numvfs", "7")
        devices = [f"mock{pf}" for pf in range(20)] + [f"mock{pf}v{v}" for pf in range(20) for v in range(7)]
        async with admin_client(plane.kubeconfig) as api:
            await create_node(api, node)
            await CoreV1Api(api).create_namespace({"metadata": {"name": ns}})  # type: ignore[arg-type]
            ones = await make_claims(api, ns, node, [[d] for d in devices[:CONCURRENT]])
            eights = await make_claims(
                api, ns, node, [devices[i * 8 : (i + 1) * 8] for i in range(CONCURRENT)]
            )
        # Nobody reads the agent's stdout while it is under load: log warnings only,
        # or the pipe fills and the agent blocks on a log write.
        env = dirs.env(node, plane.kubeconfig, MOCKACCEL_LOG_LEVEL="warning")
        with service_process("mockaccel_node_agent", env=env) as agent:
            await asyncio.to_thread(_wait_for_socket, dirs.registration_socket)
            pid = agent.process.pid
            client = KubeletClient(dirs.registration_socket, timeout=60)
            await client.prepare([])  # connect
            await asyncio.sleep(1)
            idle = rss_kib(pid)
            print(f"devices={len(devices)} node={node}")
            print(f"RSS idle: {idle / 1024:.1f} MiB")

            async def one(ref: ClaimRef) -> float:
                started = time.perf_counter()
                answer = (await client.prepare([ref]))[ref.uid]
                elapsed = time.perf_counter() - started
                if answer.error:
                    raise RuntimeError(answer.error)
                return elapsed

            for label, refs in (("1-device", ones), ("8-device", eights)):
                sequential, unprepare = [], []
                for i in range(SEQUENTIAL):
                    ref = refs[i % len(refs)]
                    sequential.append(await one(ref))
                    started = time.perf_counter()
                    await client.unprepare([ref])
                    unprepare.append(time.perf_counter() - started)
                report(f"prepare {label} sequential", sequential)
                report(f"unprepare {label} sequential", unprepare)
                concurrent: list[float] = []
                for _ in range(ROUNDS):
                    concurrent += await asyncio.gather(*(one(ref) for ref in refs))
                    await client.unprepare(refs)
                report(f"prepare {label} {CONCURRENT} concurrent", concurrent)
            after, peak = rss_kib(pid) / 1024, rss_kib(pid, "VmHWM") / 1024
            print(f"RSS after load: {after:.1f} MiB, peak (VmHWM): {peak:.1f} MiB")
            client.close()
            agent.stop()


if __name__ == "__main__":
    asyncio.run(main())
