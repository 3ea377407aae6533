"""What an emulated node is made of: one vfio-server per PF and the QEMU command line placing them.

Pure functions, no I/O. The PCI placement comes from ``pci_layout`` in
mockaccel_common.simulator.topology, the rule the simulator uses too, so the
guest's addresses can never drift from the simulated ones (docs/abi.md §6.1):
NUMA node n gets a ``pxb-pcie`` with ``bus_nr`` 0x10·(n+1), and its k-th PF sits
on root port ``addr`` k. QEMU lists expanders in ACPI in reverse creation
order and Linux probes root bridges in that order, so expanders are created
highest node first: PFs then probe, and get their ``mockN`` names, in
ascending bus order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mockaccel_common.simulator.topology import NodeSpec, PciPlacement, PfSpec, pci_layout

# Guest RAM per NUMA node; the conformance suite's Python needs about 100 MiB.
MEM_PER_NUMA_MB = 384
MIN_MEM_MB = 512
SHARE_TAG = "share"
ROOTFS_TAG = "rootfs"


@dataclass(frozen=True)
class PfPlan:
    spec: PfSpec
    placement: PciPlacement
    socket: Path
    control_socket: Path

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class NodePlan:
    node: NodeSpec
    pfs: tuple[PfPlan, ...]

    @property
    def numa_count(self) -> int:
        """NUMA nodes the guest needs: up to the highest one a PF uses (at least 1)."""
        return max((pf.spec.numa_node for pf in self.pfs), default=-1) + 1 or 1

    @property
    def mem_mb(self) -> int:
        return max(MIN_MEM_MB, MEM_PER_NUMA_MB * self.numa_count)

    def pf(self, name: str) -> PfPlan:
        for pf in self.pfs:
            if pf.name == name:
                return pf
        raise KeyError(f"no PF {name} on node {self.node.name}")


def plan_node(node: NodeSpec, socket_dir: Path) -> NodePlan:
    """Sockets live in ``socket_dir``, which must be short: a Unix socket path has 108 bytes."""
    pfs = tuple(
        PfPlan(pf, pci_layout(pf), socket_dir / f"{pf.name}.sock", socket_dir / f"{pf.name}.ctl") for pf in node.pfs
    )
    return NodePlan(node, pfs)


def server_args(pf: PfPlan, wordlist: Path | None) -> list[str]:
    """Arguments of ``python -m mockaccel_vfio_server`` for one PF of the topology."""
    args = [
        "--uuid", str(pf.spec.uuid), "--memory", str(pf.spec.memory), "--total-vfs", str(pf.spec.total_vfs),
        "--vf-memory", str(pf.spec.vf_memory), "--control-socket", str(pf.control_socket),
    ]  # fmt: skip
    if wordlist is not None:
        args += ["--wordlist", str(wordlist)]
    if pf.placement.expander_bus:
        # QEMU routes no INTx from behind pxb-pcie: the device offers MSI only, so a guest
        # without MSI (pci=nomsi) polls it instead of meeting an interrupt no handler claims.
        args += ["--intx", "false"]
    return [*args, str(pf.socket)]


def qemu_args(
    plan: NodePlan,
    *,
    kernel: Path,
    initrd: Path,
    serial_log: Path,
    shares: Sequence[tuple[Path, str, bool]] = (),
    append: str = "",
    network: bool = False,
) -> list[str]:
    """QEMU arguments (without the binary): q35, TCG, memfd RAM per NUMA node, the PFs, 9p shares.

    With ``network`` the guest gets a virtio NIC on QEMU user networking
    (slirp): it reaches the host's loopback at 10.0.2.2 (eth0 10.0.2.15/24).
    """
    numa = plan.numa_count
    mem = plan.mem_mb - plan.mem_mb % numa
    nic = "user,model=virtio-net-pci" if network else "none"
    args = [
        "-accel", "tcg", "-nographic", "-no-reboot", "-nic", nic, "-vga", "none", "-monitor", "none",
        "-serial", f"file:{serial_log}", "-m", f"{mem}M", "-kernel", str(kernel), "-initrd", str(initrd),
        # A ring the whole run fits in: the tests read dmesg for kernel reports after the suite.
        "-append", f"console=ttyS0 panic=-1 loglevel=5 log_buf_len=16M {append}".strip(),
        "-machine", "q35", "-smp", f"{numa},sockets={numa},cores=1,threads=1",
    ]  # fmt: skip
    for n in range(numa):
        args += [
            "-object", f"memory-backend-memfd,id=mem{n},size={mem // numa}M,share=on",
            "-numa", f"node,nodeid={n},cpus={n},memdev=mem{n}",
        ]  # fmt: skip
    numa_of_bus = {pf.placement.expander_bus: pf.spec.numa_node for pf in plan.pfs if pf.spec.numa_node >= 0}
    expanders = sorted(numa_of_bus.items())
    for bus, numa_node in reversed(expanders):
        args += ["-device", f"pxb-pcie,id=pxb{bus:x},bus_nr={bus},numa_node={numa_node},bus=pcie.0"]
    for i, pf in enumerate(plan.pfs):
        parent = f"pxb{pf.placement.expander_bus:x}" if pf.placement.expander_bus else "pcie.0"
        port = pf.placement.root_port
        device = {"driver": "vfio-user-pci", "bus": f"rp{i}", "socket": {"path": str(pf.socket), "type": "unix"}}
        args += [
            "-device", f"pcie-root-port,id=rp{i},bus={parent},addr={port.device:#x},chassis={i + 1},slot={i}",
            "-device", json.dumps(device, separators=(",", ":")),
        ]  # fmt: skip
    for j, (path, tag, readonly) in enumerate(shares):
        ro = ",readonly=on" if readonly else ""
        args += [
            "-fsdev", f"local,id=fs{j},path={path},security_model=none{ro}",
            "-device", f"virtio-9p-pci,fsdev=fs{j},mount_tag={tag},bus=pcie.0",
        ]  # fmt: skip
    return args
