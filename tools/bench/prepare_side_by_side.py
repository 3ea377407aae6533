"""NodePrepareResources side by side: the node agent and the reference plugin, one run.

Both plugins serve identical simulated nodes (160 devices: 20 PFs with 7 VFs
each, one tree per plugin) and read the same ResourceClaims from one loopback
kube-apiserver (the test-bed ControlPlane); their allocations are written
through the status subresource, so no scheduler time is measured. The same
kubelet-side client, the Go one built from the kubelet's own stubs
(tools/go/kubelet-client, ``-bench`` mode), drives each plugin in turn:
registration, then for 1-device and 8-device claims SEQUENTIAL prepare +
unprepare pairs, then CONCURRENT claims prepared at once (one call each, as
kubelet does per pod) and unprepared at once, CONCURRENT_ROUNDS times; last,
the floor row: FLOOR sequential unprepares of claims the plugin never
prepared, so it only looks each up and answers (what a call costs with no
work behind it: transport, framework, lookup). The plugins alternate for
``--rounds`` rounds and the samples are pooled, so background load on the
machine hits both alike. Printed: p50/p99 per mode for each plugin and their
ratio (node agent / reference), and RSS idle and after load (VmRSS, and
VmHWM, the peak).

The node agent runs as deployed: by default its production pex (``./pants
package services/node-agent/mockaccel_node_agent:node-agent``, what the
container image runs; tools/bench/prepare_side_by_side builds it), else as
``python -m mockaccel_node_agent`` from this interpreter's environment
(``--pex PATH`` names a pex, ``--no-pex`` forces the latter; a development
environment holds packages the pex does not, such as ``rich``, which
structlog imports when present, and they change RSS). The first line of
output says which.

The reference is tools/go/reference-plugin, on the official kubeletplugin
helper, doing the same per-claim work (fetch the claim, read the devices from
sysfs, one transient CDI spec per claim with the same content, an atomic,
fsynced checkpoint). Run it with tools/bench/prepare_side_by_side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes_asyncio.client import CoreV1Api, ResourceV1Api

from mockaccel_common.provisioned import require
from mockaccel_common.simulator.engine import SimulatedNode
from mockaccel_testing import ControlPlane, Settings, admin_client, create_node
from mockaccel_testing.node_agent import DRIVER, AgentDirs, agent_dirs, simulated_node
from mockaccel_testing.service_process import image_env, service_process

SEQUENTIAL = 200
FLOOR = 400
CONCURRENT = 20
CONCURRENT_ROUNDS = 5
ROOT = Path(__file__).resolve().parents[2]
PEX = ROOT / "dist/services.node-agent.mockaccel_node_agent/node-agent.pex"
CONTAINERFILE = ROOT / "services/node-agent/Containerfile"
CDI_SYSFS_DIR = "/run/mock-accel/sys"  # both plugins: a simulated node's container path
PFS_PER_NUMA, NUMA_NODES, VFS = 10, 2, 7
MODES = (
    ("prepare", "sequential"),
    ("unprepare", "sequential"),
    ("prepare", "concurrent"),
    ("unprepare", "concurrent"),
)


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(f"{field} not in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def wait_for(path: Path, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {within} s")
        time.sleep(0.05)


def device_names() -> list[str]:
    pfs = PFS_PER_NUMA * NUMA_NODES
    return [f"mock{pf}" for pf in range(pfs)] + [f"mock{pf}v{v}" for pf in range(pfs) for v in range(VFS)]


def prepare_node(dirs: AgentDirs, node: str) -> None:
    simulated_node(dirs, node, pfs=PFS_PER_NUMA, numa_nodes=NUMA_NODES, total_vfs=VFS)
    sim = SimulatedNode.open(dirs.sysfs)
    for pf in range(PFS_PER_NUMA * NUMA_NODES):
        sim.write(f"mock{pf}", "sriov_numvfs", str(VFS))
    (dirs.root / "dev").mkdir()


async def make_claims(api: Any, ns: str, node: str, groups: list[list[str]]) -> list[dict[str, str]]:
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
        pf_of = {d: int(d[4:].split("v")[0]) for d in devices}
        results = [
            {"request": "r", "driver": DRIVER, "pool": f"{node}/numa{pf_of[d] // PFS_PER_NUMA}", "device": d}
            for d in devices
        ]
        await resource.patch_namespaced_resource_claim_status(
            name, ns, {"status": {"allocation": {"devices": {"results": results}}}}
        )
        refs.append({"namespace": ns, "uid": created.metadata.uid, "name": name})
    return refs


@contextmanager
def reference_plugin(binary: Path, kubeconfig: Path, dirs: AgentDirs) -> Iterator[int]:
    """The reference plugin as a process serving ``dirs``; yields its pid."""
    with open(dirs.root / "reference.log", "wb") as log:
        process = subprocess.Popen(
            [
                str(binary),
                f"--kubeconfig={kubeconfig}",
                f"--plugin-dir={dirs.plugin}",
                f"--registry-dir={dirs.registry}",
                f"--cdi-dir={dirs.cdi}",
                f"--sysfs-root={dirs.sysfs}",
                f"--device-dir={dirs.root / 'dev'}",
                f"--cdi-sysfs-dir={CDI_SYSFS_DIR}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process.pid
        finally:
            process.terminate()
            process.wait(timeout=10)


def drive(client: Path, dirs: AgentDirs, plan: Path) -> dict[str, dict[str, list[float]]]:
    """One pass of the Go client over one plugin: label → mode → seconds per call."""
    done = subprocess.run(
        [str(client), "-registration-socket", str(dirs.registration_socket), "-bench", str(plan), "-timeout", "120s"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        output = f"{done.stdout[-2000:]} {done.stderr[-2000:]}"
        raise RuntimeError(f"kubelet-client -bench failed ({done.returncode}): {output}")
    result: dict[str, Any] = json.loads(done.stdout)
    samples: dict[str, dict[str, list[float]]] = result["samples"]
    return samples


def row(label: str, ref: list[float], agent: list[float]) -> str:
    r50, r99 = percentile(ref, 0.5) * 1000, percentile(ref, 0.99) * 1000
    a50, a99 = percentile(agent, 0.5) * 1000, percentile(agent, 0.99) * 1000
    ratio = f"{a50 / r50:.2f}x / {a99 / r99:.2f}x"
    return f"| {label} | {r50:.2f} / {r99:.2f} | {a50:.2f} / {a99:.2f} | {ratio} | n={len(agent)} |"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per plugin, pooled (default 3)")
    parser.add_argument("--sequential", type=int, default=SEQUENTIAL, help="sequential calls per round and size")
    parser.add_argument("--floor", type=int, default=FLOOR, help="floor calls per round (never-prepared claims)")
    parser.add_argument("--agent-env", action="append", default=[], help="extra KEY=VALUE for the node agent")
    parser.add_argument("--pex", type=Path, help=f"run the node agent from this pex (default: {PEX.name} if built)")
    parser.add_argument("--no-pex", action="store_true", help="run python -m mockaccel_node_agent in this environment")
    args = parser.parse_args()
    if args.pex is None and not args.no_pex and PEX.is_file():
        args.pex = PEX
    if args.pex is not None and not args.pex.is_file():
        parser.error(f"no pex at {args.pex}")
    where = f"pex {args.pex} (production pex)" if args.pex else f"python -m mockaccel_node_agent ({sys.executable})"
    print(f"node agent: {where}", flush=True)
    client = require("MOCKACCEL_KUBELET_CLIENT")
    reference = require("MOCKACCEL_REFERENCE_PLUGIN")
    work = Path(tempfile.mkdtemp(prefix="side-by-side-"))
    plane = ControlPlane.from_settings(Settings.from_env(), work)
    await asyncio.to_thread(plane.start)
    try:
        await bench(plane, client, reference, args)
    finally:
        await asyncio.to_thread(plane.stop)


async def bench(plane: ControlPlane, client: Path, reference: Path, args: argparse.Namespace) -> None:
    node, ns = f"bench-{uuid.uuid4().hex[:6]}", "bench"
    devices = device_names()
    with agent_dirs("sbs-a-") as agent_dirs_, agent_dirs("sbs-r-") as ref_dirs:
        for dirs in (agent_dirs_, ref_dirs):
            await asyncio.to_thread(prepare_node, dirs, node)
        async with admin_client(plane.kubeconfig) as api:
            await create_node(api, node)
            await CoreV1Api(api).create_namespace({"metadata": {"name": ns}})  # type: ignore[arg-type]
            ones = await make_claims(api, ns, node, [[d] for d in devices[:CONCURRENT]])
            eights = await make_claims(api, ns, node, [devices[i * 8 : (i + 1) * 8] for i in range(CONCURRENT)])
        plan = Path(tempfile.mkstemp(prefix="sbs-plan-", suffix=".json")[1])
        plan.write_text(
            json.dumps(
                {
                    "sequential": args.sequential,
                    "concurrent": CONCURRENT,
                    "rounds": CONCURRENT_ROUNDS,
                    "groups": [{"label": "1 device", "claims": ones}, {"label": "8 devices", "claims": eights}],
                    "floor": args.floor,
                }
            )
        )
        # Nobody reads the agent's stdout while it is under load: log warnings only,
        # or the pipe fills and the agent blocks on a log write. Every default feature
        # stays on (the health stream included).
        extra = dict(item.split("=", 1) for item in args.agent_env)
        env = agent_dirs_.env(
            node,
            plane.kubeconfig,
            MOCKACCEL_LOG_LEVEL="warning",
            MOCKACCEL_DEVICE_DIR=str(agent_dirs_.root / "dev"),
            MOCKACCEL_CDI_SYSFS_DIR=CDI_SYSFS_DIR,
            PATH=os.environ.get("PATH", ""),
            **image_env(CONTAINERFILE),
            **extra,
        )
        with reference_plugin(reference, plane.kubeconfig, ref_dirs) as ref_pid, service_process(
            "mockaccel_node_agent", env=env, pex=args.pex
        ) as agent:
            await asyncio.to_thread(wait_for, agent_dirs_.registration_socket)
            await asyncio.to_thread(wait_for, ref_dirs.registration_socket)
            await asyncio.sleep(2)
            pids = {"reference": ref_pid, "node agent": agent.process.pid}
            idle = {k: status_kib(pid, "VmRSS") for k, pid in pids.items()}
            cpu = dict.fromkeys(pids, 0.0)
            calls = 0
            pooled: dict[str, dict[tuple[str, str], list[float]]] = {"reference": {}, "node agent": {}}
            for round_ in range(args.rounds):
                for who, dirs in (("reference", ref_dirs), ("node agent", agent_dirs_)):
                    started, cpu_before = time.monotonic(), cpu_seconds(pids[who])
                    samples = await asyncio.to_thread(drive, client, dirs, plan)
                    cpu[who] += cpu_seconds(pids[who]) - cpu_before
                    print(f"round {round_ + 1}/{args.rounds}: {who} done in {time.monotonic() - started:.1f} s")
                    for label, modes in samples.items():
                        for mode, values in modes.items():
                            pooled[who].setdefault((label, mode), []).extend(values)
                            calls += len(values) if who == "reference" else 0
            after = {k: status_kib(pid, "VmRSS") for k, pid in pids.items()}
            peak = {k: status_kib(pid, "VmHWM") for k, pid in pids.items()}
            agent.stop()
        plan.unlink()
    print()
    print(f"node={node} devices={len(devices)} rounds={args.rounds} (pooled)")
    print("| mode (p50 / p99, ms) | reference plugin (kubeletplugin helper) | mock-accel node agent | ratio | n |")
    print("| --- | --- | --- | --- | --- |")
    for label in ("1 device", "8 devices"):
        for verb, how in MODES:
            key = (label, f"{verb}_{how}")
            extent = f"{args.sequential} sequential" if how == "sequential" else f"{CONCURRENT} concurrent"
            print(row(f"{verb}, {label}, {extent}", pooled["reference"][key], pooled["node agent"][key]))
    if args.floor > 0:
        floor = ("floor", "unprepare_unknown")
        label = f"floor: unprepare, claim never prepared, {args.floor} sequential"
        print(row(label, pooled["reference"][floor], pooled["node agent"][floor]))
    mib = {k: v / 1024 for k, v in idle.items()}
    aft = {k: v / 1024 for k, v in after.items()}
    top = {k: v / 1024 for k, v in peak.items()}
    ref_rss = f"{mib['reference']:.1f} / {aft['reference']:.1f} / {top['reference']:.1f}"
    agent_rss = f"{mib['node agent']:.1f} / {aft['node agent']:.1f} / {top['node agent']:.1f}"
    ratio = f"{mib['node agent'] / mib['reference']:.2f}x / {aft['node agent'] / aft['reference']:.2f}x"
    print(f"| RSS idle / after load / peak (MiB) | {ref_rss} | {agent_rss} | {ratio} |  |")
    per_call = {k: 1000 * v / max(calls, 1) for k, v in cpu.items()}
    cpu_ratio = per_call["node agent"] / max(per_call["reference"], 1e-9)
    print(
        f"| CPU per call, all modes (ms) | {per_call['reference']:.2f} | {per_call['node agent']:.2f}"
        f" | {cpu_ratio:.2f}x | n={calls} |"
    )


if __name__ == "__main__":
    asyncio.run(main())
