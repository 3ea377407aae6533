"""Health interrupts reach the driver, behind a pxb-pcie expander and on the root bus (kernel only).

QEMU routes no INTx from behind a ``pxb-pcie`` expander, where every
NUMA-placed PF sits, so the driver uses MSI; ``/proc/interrupts`` counts what
was delivered. The health poll would hide a missing interrupt from every other
test: these look at the interrupt itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mockaccel_common import regmap
from mockaccel_common.simulator.topology import PfSpec, pci_layout
from mockaccel_conformance.target import GuestTarget

IRQ_STATUS = regmap.register("IRQ_STATUS").offset


def pf_placed(kernel: GuestTarget, placement: str) -> PfSpec:
    behind_expander = placement == "pxb-pcie"
    return next(pf for pf in kernel.node.pfs if (pci_layout(pf).expander_bus != 0) == behind_expander)


def irq_line(name: str) -> tuple[int, str]:
    """Interrupts delivered to the action ``name`` on all CPUs, and its /proc/interrupts line."""
    lines = Path("/proc/interrupts").read_text().splitlines()
    cpus = len(lines[0].split())
    for line in lines[1:]:
        fields = line.split()
        if fields and fields[-1] == name:
            return sum(int(f) for f in fields[1 : 1 + cpus]), line
    raise AssertionError(f"no interrupt named {name} in /proc/interrupts:\n" + "\n".join(lines))


@pytest.mark.parametrize("placement", ["root-bus", "pxb-pcie"])
def test_health_fault_delivers_an_msi(kernel: GuestTarget, placement: str) -> None:
    pf = pf_placed(kernel, placement)
    before, line = irq_line(pf.name)
    assert "PCI-MSI" in line, f"{pf.name} ({placement}) does not use MSI: {line}"
    kernel.set_health(pf.name, False)
    try:
        kernel.eventually(lambda: irq_line(pf.name)[0] > before, f"an interrupt for {pf.name} ({placement})")
        kernel.eventually(lambda: kernel.read(pf.name, "health") == "unhealthy\n", "health follows")
    finally:
        kernel.set_health(pf.name, True)
    assert kernel.server_state(pf.name)["msi_enabled"] is True


def test_cause_is_acknowledged_while_reads_fail(kernel: GuestTarget) -> None:
    """An all-ones read still acknowledges the cause, so the next change interrupts again."""
    pf = pf_placed(kernel, "pxb-pcie")
    try:
        kernel.fault(pf.name, "fail_reads", True)
        try:
            kernel.set_health(pf.name, False)
            kernel.eventually(
                lambda: kernel.device_register(pf.name, IRQ_STATUS) == 0, "IRQ_STATUS cleared despite failed reads"
            )
        finally:
            kernel.fault(pf.name, "fail_reads", False)
        before, _ = irq_line(pf.name)
        kernel.set_health(pf.name, True)
        kernel.eventually(lambda: irq_line(pf.name)[0] > before, f"an interrupt for {pf.name} after the fault")
        kernel.eventually(lambda: kernel.read(pf.name, "health") == "healthy\n", "health follows")
    finally:
        kernel.set_health(pf.name, True)  # the next test gets a healthy PF whatever failed here
