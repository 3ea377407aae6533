"""Benchmark of the controller against a loopback control plane; prints numbers (not a test).

Run from the repo root (the provisioned Kubernetes binaries are found as the tests find them):
    ./pants package services/controller/mockaccel_controller:controller
    ./pants run tools/bench/controller_bench.py -- [--changes 40] [--profile DIR]
or, without Pants' runner:
    PYTHONPATH=libs/mockaccel-common:libs/mockaccel-testing:services/controller \\
        python3 tools/bench/controller_bench.py [--changes 40] [--profile DIR]
Its BUILD target runs it in the build root (it reads dist/ and the Containerfile).

The controller runs as its own process, default settings unless named, as in
production: by default the production pex (``./pants package
services/controller/mockaccel_controller:controller``, what the container image
runs) when it has been built, else ``python -m mockaccel_controller`` from this
interpreter's environment (``--pex PATH`` names a pex, ``--no-pex`` forces the
latter; the export environment has dev packages, such as ``rich``, that the
pex lacks and that change start-up and RSS). The first line of output says
which. This process only writes sysfs and watches the API. Measures (goals of issue 15 item 4):
  latency   sysfs change -> the controller's last slice write for it visible in a
            watch, 1,024-device node, N changes (sriov_numvfs 7 -> 0 -> 7)    p99 <= 300 ms
  publish   10,240 devices in one tree (10 nodes' worth), start -> all in slices   <= 5 s
  rss       that controller's RSS after publishing, and its peak (VmHWM)         <= 64 MiB
  idle      API writes over 10 resync periods with nothing changing               0
With ``--profile DIR`` each controller runs under cProfile and its stats are
written to DIR (read them with ``python3 -m pstats``); with ``--logs DIR`` each
controller's JSON log is kept there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from kubernetes_asyncio.client import ApiClient

from mockaccel_common.regmap import DEFAULT_PF_MEMORY, DEFAULT_VF_MEMORY
from mockaccel_common.simulator.engine import SimulatedNode
from mockaccel_common.simulator.topology import MAX_NUMA_NODES, NodeSpec, PfSpec
from mockaccel_common.sysfs.reader import class_dir
from mockaccel_testing import ControlPlane, Settings, admin_client, create_node
from mockaccel_testing.controller import WriteCounter, list_slices
from mockaccel_testing.service_process import image_env

VFS = 7
PEX = Path(__file__).resolve().parents[2] / "dist/services.controller.mockaccel_controller/controller.pex"
CONTAINERFILE = Path(__file__).resolve().parents[2] / "services/controller/Containerfile"
QUIET_S = 0.5  # no slice write for this long after a change: the controller is done with it


def big_node(name: str, pfs: int) -> NodeSpec:
    """``pfs`` PFs with 7 VFs each over 14 NUMA nodes: 1,024 functions for 128 PFs, 10,240 for 1,280.

    Built in code, not from a topology file: past 15 PFs per NUMA node the PCI
    layout continues in further PCI domains (simulator/topology.pci_layout).
    """
    specs = []
    for index in range(pfs):
        numa, slot = index % MAX_NUMA_NODES, index // MAX_NUMA_NODES
        specs.append(PfSpec(index, numa, slot, DEFAULT_PF_MEMORY, VFS, DEFAULT_VF_MEMORY, uuid.UUID(int=index + 1)))
    return NodeSpec(name, tuple(sorted(specs, key=lambda p: (p.numa_node, p.slot))))


def simulated(work: Path, name: str, pfs: int) -> SimulatedNode:
    """The node's simulated tree under ``work``, created (slow: minutes for 10,240 functions) or reused."""
    spec = big_node(name, pfs)
    if SimulatedNode.is_simulated(work / name):
        sim = SimulatedNode(work / name, spec)  # (its marker's topology is past a topology file's limits)
        for pf in spec.pfs:  # a run stopped half-way may have left VFs disabled
            if (class_dir(sim.root) / pf.name / "sriov_numvfs").read_text().strip() != str(VFS):
                sim.write(pf.name, "sriov_numvfs", "0")
                sim.write(pf.name, "sriov_numvfs", str(VFS))
        return sim
    started = time.perf_counter()
    sim = SimulatedNode.create(work / name, spec)
    for pf in sim.node.pfs:
        sim.write(pf.name, "sriov_numvfs", str(VFS))
    print(f"  (simulated {pfs * (VFS + 1)} functions in {time.perf_counter() - started:.1f} s)", file=sys.stderr)
    return sim


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for pid {pid}")


class ControllerProcess:
    """The controller for one node (its pex, or ``python -m``); ``ready`` is set by its "ready" log line."""

    pex: Path | None = None  # set from the command line: run this pex instead of ``python -m``

    def __init__(
        self, node: str, sysfs: Path, kubeconfig: Path, extra: Sequence[str], profile: Path | None, logs: Path | None
    ) -> None:
        self.node = node
        self.logs = logs
        interpreter = [str(self.pex)] if self.pex else [sys.executable]
        if self.pex:  # the pex's own environment only: no PYTHONPATH from this process
            self.env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        else:
            self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.env.update(image_env(CONTAINERFILE))  # the image's TLS setting, as deployed
        if profile:
            self.env["PEX_INTERPRETER"] = "1"  # the pex as an interpreter, to run cProfile around the module
            stats = str(profile / f"{node}.pstats")
            module = [*interpreter, "-m", "cProfile", "-o", stats, "-m", "mockaccel_controller"]
        elif self.pex:
            module = interpreter  # the pex's entry point is mockaccel_controller.__main__
        else:
            module = [*interpreter, "-m", "mockaccel_controller"]
        self.command = [
            *module, "--node-name", node, "--sysfs-root", str(sysfs),
            "--kubeconfig", str(kubeconfig), "--require-agent", "false", *extra,
        ]  # fmt: skip
        self.process: asyncio.subprocess.Process | None = None
        self.lines: list[bytes] = []
        self.ready = asyncio.Event()
        self.exited = asyncio.Event()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def _read(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.lines.append(line)
            if b'"event": "ready"' in line or b'"event":"ready"' in line:
                self.ready.set()
        self.exited.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ControllerProcess]:
        self.process = await asyncio.create_subprocess_exec(
            *self.command,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            limit=1 << 24,  # a failure's traceback is one long JSON line
            env=self.env,
        )
        reader = asyncio.create_task(self._read())
        try:
            yield self
        finally:
            if self.process.returncode is None:
                self.process.terminate()
                await asyncio.wait_for(self.process.wait(), 30)
            await reader
            if self.logs is not None:
                (self.logs / f"{self.node}.log").write_bytes(b"".join(self.lines))

    def tail(self, lines: int = 20) -> str:
        return b"".join(self.lines[-lines:]).decode(errors="replace")


class Writes:
    """Times of this driver's slice writes on one node, from a watch in this process."""

    def __init__(self, kube: ApiClient, node: str, controller: ControllerProcess | None = None) -> None:
        self.controller = controller
        self.counter = WriteCounter(kube, node)
        self.times: list[float] = []
        self.counter.on_event = lambda _type, _name, _pool: self.times.append(time.perf_counter())

    async def quiet_after(self, since: float, quiet: float = QUIET_S, timeout: float = 30.0) -> float:
        """The time of the last write after ``since``, once no write came for ``quiet`` seconds."""
        deadline = time.perf_counter() + timeout
        while True:
            now = time.perf_counter()
            after = [t for t in self.times if t >= since]
            if after and now - after[-1] >= quiet:
                return after[-1]
            if now > deadline:
                raise TimeoutError(f"no quiet slice writes {timeout} s after the change ({len(after)} writes)")
            if self.controller is not None and self.controller.exited.is_set():
                raise RuntimeError(f"the controller exited:\n{self.controller.tail()}")
            await asyncio.sleep(0.02)


async def device_count(kube: ApiClient, node: str) -> int:
    return sum(len(s["spec"]["devices"]) for s in await list_slices(kube, node))


async def published(kube: ApiClient, node: str, writes: Writes, expected: int, since: float) -> float:
    """The time of the last slice write once ``expected`` devices are published (listing only when writes pause)."""
    deadline = time.perf_counter() + 300
    while True:
        done = await writes.quiet_after(since, timeout=300)
        if (count := await device_count(kube, node)) == expected:
            return done
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{count} of {expected} devices published on {node}")
        since = done + 1e-6  # not there yet: wait for the next write


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def latency(
    plane: ControlPlane, kube: ApiClient, work: Path, changes: int, profile: Path | None, logs: Path | None
) -> None:
    node = "bench-1024"
    await create_node(kube, node)
    sim = simulated(work, node, 128)
    controller = ControllerProcess(node, sim.root, plane.kubeconfig, [], profile, logs)
    writes = Writes(kube, node, controller)
    async with controller.running(), writes.counter:
        await published(kube, node, writes, 1024, 0)
        samples: list[float] = []
        writing: list[float] = []
        cpu: list[float] = []
        for i in range(changes):
            pf = f"mock{(i // 2) * 3 % 128}"
            value = "0" if i % 2 == 0 else str(VFS)
            cpu0 = cpu_seconds(controller.pid)
            t0 = time.perf_counter()
            sim.write(pf, "sriov_numvfs", value)  # the simulator adds or removes 7 VF directories
            t1 = time.perf_counter()
            done = await published(kube, node, writes, 1024 - VFS if value == "0" else 1024, t0)
            samples.append(done - t1)
            writing.append(t1 - t0)
            cpu.append(cpu_seconds(controller.pid) - cpu0)
        print(
            f"sysfs change -> slice (1,024-device node, n={changes}, from the completed write): "
            f"median {statistics.median(samples) * 1e3:.0f} ms, p99 {percentile(samples, 0.99) * 1e3:.0f} ms, "
            f"max {max(samples) * 1e3:.0f} ms"
        )
        print(
            f"  the simulator's write itself: median {statistics.median(writing) * 1e3:.0f} ms; "
            f"controller CPU per change: median {statistics.median(cpu) * 1e3:.0f} ms"
        )
        print(f"  controller RSS (1,024 devices): {rss_mib(controller.pid):.1f} MiB")


async def publish(
    plane: ControlPlane, kube: ApiClient, work: Path, profile: Path | None, logs: Path | None
) -> None:
    node = "bench-10k"
    await create_node(kube, node)
    sim = simulated(work, node, 1280)
    controller = ControllerProcess(node, sim.root, plane.kubeconfig, [], profile, logs)
    writes = Writes(kube, node, controller)
    async with writes.counter:
        started = time.perf_counter()
        async with controller.running():
            done = await published(kube, node, writes, 10240, started)
            ready = controller.ready.is_set()
            print(
                f"publish 10,240 devices (one tree, {len(await list_slices(kube, node))} slices): "
                f"{done - started:.2f} s from process start (ready logged: {ready})"
            )
            print(
                f"  controller RSS after publishing: {rss_mib(controller.pid):.1f} MiB, "
                f"peak (VmHWM) {rss_mib(controller.pid, 'VmHWM'):.1f} MiB; "
                f"controller CPU until then: {cpu_seconds(controller.pid):.2f} s"
            )


async def idle(plane: ControlPlane, kube: ApiClient, work: Path) -> None:
    node = "bench-idle"
    resync = 0.5
    await create_node(kube, node)
    sim = simulated(work, node, 16)
    controller = ControllerProcess(node, sim.root, plane.kubeconfig, ["--resync-interval", str(resync)], None, None)
    writes = Writes(kube, node, controller)
    async with controller.running(), writes.counter:
        await published(kube, node, writes, 128, 0)
        async with WriteCounter(kube, node) as counter:
            await asyncio.sleep(10 * resync)  # the measured idle period itself
            await counter.barrier()
            print(f"API writes during 10 idle resyncs ({resync} s each, 128 devices): {counter.writes}")


async def bench(plane: ControlPlane, work: Path, args: argparse.Namespace) -> None:
    async with admin_client(plane.kubeconfig) as kube:
        if "latency" in args.only:
            await latency(plane, kube, args.trees or work, args.changes, args.profile, args.logs)
        if "publish" in args.only:
            await publish(plane, kube, args.trees or work, args.profile, args.logs)
        if "idle" in args.only:
            await idle(plane, kube, args.trees or work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=40, help="sysfs changes timed on the 1,024-device node")
    parser.add_argument("--profile", type=Path, help="run each controller under cProfile, stats into this folder")
    parser.add_argument("--logs", type=Path, help="keep each controller's log in this folder")
    parser.add_argument("--trees", type=Path, help="keep the simulated trees here and reuse them in later runs")
    runner = parser.add_mutually_exclusive_group()
    runner.add_argument("--pex", type=Path, help=f"run the controller from this pex (default: {PEX.name} if built)")
    runner.add_argument("--no-pex", action="store_true", help="run python -m mockaccel_controller in this environment")
    parser.add_argument(
        "--only", nargs="+", default=["latency", "publish", "idle"], choices=["latency", "publish", "idle"]
    )
    args = parser.parse_args()
    if args.pex is None and not args.no_pex and PEX.is_file():
        args.pex = PEX
    if args.pex is not None and not args.pex.is_file():
        parser.error(f"no pex at {args.pex}")
    ControllerProcess.pex = args.pex
    print(
        f"controller: {'pex ' + str(args.pex) if args.pex else 'python -m mockaccel_controller'}"
        f" ({'production pex' if args.pex else 'this environment: ' + sys.executable})"
    )
    for folder in (args.profile, args.logs):
        if folder:
            folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plane = ControlPlane.from_settings(Settings.from_env(), work / "cp")
        print("starting the control plane", file=sys.stderr)
        plane.start()
        try:
            asyncio.run(bench(plane, work, args))
        finally:
            plane.stop()


if __name__ == "__main__":
    main()
