"""Many nodes: 100 simulated nodes x 16 devices, one controller process each, one API server; prints numbers.

Run from the repo root (the provisioned Kubernetes binaries are found as the tests find them):
    PYTHONPATH=libs/mockaccel-common:libs/mockaccel-testing:services/controller \\
        python3 tools/bench/controller_fleet_bench.py [--nodes 100] [--idle 300]

The shape of a real cluster (issue 15 item 5): every controller starts at once
with its default settings (resync every 300 s). Printed:
  publish   time from the first controller's start until every node's 16 devices are in slices
  start     API requests per node until then (all controllers' requests / nodes, by verb)
  idle      API requests per node over an idle window, and per hour extrapolated
            (goal: 0 writes; resync lists and watch renewals are reads)
  apiserver CPU seconds of kube-apiserver (and etcd) over the idle window, per hour extrapolated
  rss       the controllers' RSS (median, max) and their sum
Requests are counted from the API server's audit log (every request of the
controllers' user agent, once, at ResponseComplete; a watch counts when it ends).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from kubernetes_asyncio.client import ApiClient

from mockaccel_common.simulator.engine import SimulatedNode
from mockaccel_common.simulator.topology import loads_topology
from mockaccel_controller.adapters.k8s import USER_AGENT
from mockaccel_testing import ControlPlane, Settings, admin_client, create_node
from mockaccel_testing.binaries import KubeBinaries

AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
  - level: Metadata
"""


def topology(name: str) -> str:
    """16 devices: 2 PFs (one per NUMA node) with 7 VFs each."""
    pf = '[[node.pf]]\nnuma_node = {n}\ncount = 1\ntotal_vfs = 7\nvf_memory = "2Gi"\n'
    return f'[[node]]\nname = "{name}"\n' + pf.format(n=0) + pf.format(n=1)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Audit:
    """The controllers' requests in the audit log, read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def take(self) -> Counter[str]:
        """Requests by verb since the last call."""
        verbs: Counter[str] = Counter()
        if not self.path.exists():
            return verbs
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].splitlines():
            event = json.loads(line)
            if event.get("userAgent", "").startswith(USER_AGENT):
                verbs[event["verb"]] += 1
        return verbs


def per_node(verbs: Counter[str], nodes: int, scale: float = 1.0) -> str:
    total = sum(verbs.values())
    detail = ", ".join(f"{verb} {count * scale / nodes:.2f}" for verb, count in sorted(verbs.items()))
    return f"{total * scale / nodes:.2f} ({detail or 'none'})"


async def devices_per_node(kube: ApiClient) -> Counter[str]:
    result = await kube.call_api(
        "/apis/resource.k8s.io/v1/resourceslices",
        "GET",
        header_params={"Accept": "application/json"},
        response_types_map={200: "object"},
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )
    counts: Counter[str] = Counter()
    for item in result["items"]:
        counts[item["spec"]["nodeName"]] += len(item["spec"]["devices"])
    return counts


async def bench(plane: ControlPlane, work: Path, nodes: int, idle: float, audit: Audit) -> None:
    names = [f"fleet-{i:03d}" for i in range(nodes)]
    async with admin_client(plane.kubeconfig) as kube:
        started = time.perf_counter()
        roots = []
        for name in names:
            await create_node(kube, name)
            sim = SimulatedNode.create(work / name, loads_topology(topology(name)).node(name))
            for pf in ("mock0", "mock1"):
                sim.write(pf, "sriov_numvfs", "7")
            roots.append(sim.root)
        print(f"  ({nodes} simulated nodes in {time.perf_counter() - started:.0f} s)", file=sys.stderr)
        audit.take()  # the bench's own setup is not the controllers'

        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        processes = []
        logs = []
        started = time.perf_counter()
        try:
            for name, root in zip(names, roots, strict=True):
                log = (work / f"{name}.log").open("wb")
                logs.append(log)
                processes.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "mockaccel_controller", "--node-name", name, "--sysfs-root", str(root),
                        "--kubeconfig", str(plane.kubeconfig), "--require-agent", "false",
                        stdout=log, stderr=asyncio.subprocess.STDOUT, env=env,
                    )  # fmt: skip
                )
            while True:
                counts = await devices_per_node(kube)
                done = sum(1 for name in names if counts[name] == 16)
                exited = [p for p in processes if p.returncode is not None]
                if exited:
                    raise RuntimeError(f"{len(exited)} controllers exited; see {work}/fleet-*.log")
                if done == nodes:
                    break
                await asyncio.sleep(1.0)
            publish = time.perf_counter() - started
            print(f"publish: every slice of {nodes} nodes x 16 devices in {publish:.1f} s (1 s polling)")
            print(f"API requests per node at start: {per_node(audit.take(), nodes)}")

            rss = sorted(rss_mib(p.pid) for p in processes)
            print(
                f"controller RSS: median {statistics.median(rss):.1f} MiB, max {rss[-1]:.1f} MiB, "
                f"sum {sum(rss) / 1024:.2f} GiB"
            )

            servers = {p.name: p.pid for p in plane.processes if p.pid is not None}
            before = {name: cpu_seconds(pid) for name, pid in servers.items()}
            print(f"  (idle window: {idle:.0f} s)", file=sys.stderr)
            await asyncio.sleep(idle)  # the measured idle window itself
            after = {name: cpu_seconds(pid) for name, pid in servers.items()}
            scale = 3600 / idle
            idle_requests = per_node(audit.take(), nodes, scale)
            print(f"API requests per node while idle, per hour (from {idle:.0f} s): {idle_requests}")
            for name in ("kube-apiserver", "etcd"):
                if name in before:
                    used = after[name] - before[name]
                    print(f"{name} CPU while idle: {used:.2f} s in {idle:.0f} s, {used * scale:.1f} s per hour")
        finally:
            for process in processes:
                if process.returncode is None:
                    process.terminate()
            for process in processes:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), 30)
            for log in logs:
                log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--idle", type=float, default=300.0, help="idle window in seconds (extrapolated to 1 h)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        policy = work / "audit-policy.yaml"
        policy.write_text(AUDIT_POLICY)
        audit_log = work / "audit.log"
        settings = Settings.from_env()
        plane = ControlPlane(
            KubeBinaries.locate(settings.kube_bin),
            work / "cp",
            start_timeout=settings.start_timeout,
            apiserver_extra_args=[
                *settings.apiserver_extra_args,
                f"--audit-policy-file={policy}",
                f"--audit-log-path={audit_log}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
            ],
        )
        print("starting the control plane", file=sys.stderr)
        plane.start()
        try:
            asyncio.run(bench(plane, work, args.nodes, args.idle, Audit(audit_log)))
        finally:
            plane.stop()


if __name__ == "__main__":
    main()
