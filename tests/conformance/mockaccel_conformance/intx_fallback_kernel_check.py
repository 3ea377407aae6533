"""INTx fallback: with MSI disabled (``pci=nomsi``) health still reaches the driver (kernel only).

Not part of the suite's own collection (the name does not end in ``_test.py``):
mockaccel_guest_run boots a second guest with ``pci=nomsi`` and runs only this
file there. The root-bus PF then has a level-triggered INTx line: each health
change must raise it, and the driver must acknowledge the cause so the line
drops and the next change interrupts again (a line left asserted would be
disabled by the kernel as "nobody cared", which the host side fails on). QEMU
routes no INTx from behind ``pxb-pcie``: the test-bed serves those PFs with
``--intx false`` (Interrupt Pin 0; an interrupt asserted there reached no handler
and the kernel disabled the shared line), so their health arrives through the
driver's poll alone.
"""

from __future__ import annotations

from pathlib import Path

from mockaccel_conformance.interrupts_kernel_test import pf_placed
from mockaccel_conformance.target import GuestTarget


def intx_line(name: str) -> tuple[int, str]:
    """Interrupts delivered on the line whose actions include ``name``, and its /proc/interrupts line.

    An INTx line may be shared (``virtio1, mock0``): the count is then the line's, not the
    device's alone, so the health checks below also require the driver to follow.
    """
    lines = Path("/proc/interrupts").read_text().splitlines()
    cpus = len(lines[0].split())
    for line in lines[1:]:
        fields = line.split()
        if name in (f.rstrip(",") for f in fields[1 + cpus :]):
            return sum(int(f) for f in fields[1 : 1 + cpus]), line
    raise AssertionError(f"no interrupt line for {name} in /proc/interrupts:\n" + "\n".join(lines))


def test_msi_is_disabled_for_this_boot() -> None:
    assert "pci=nomsi" in Path("/proc/cmdline").read_text().split()


def test_root_bus_pf_interrupts_through_its_intx_line(kernel: GuestTarget) -> None:
    pf = pf_placed(kernel, "root-bus")
    _, line = intx_line(pf.name)
    assert "PCI-MSI" not in line, f"{pf.name} uses MSI although it is disabled: {line}"
    assert "IO-APIC" in line, f"{pf.name} is not on an INTx line: {line}"
    assert kernel.server_state(pf.name)["msi_enabled"] is False
    try:
        for healthy in (False, True, False, True):  # each edge of health is one more interrupt
            before = intx_line(pf.name)[0]
            kernel.set_health(pf.name, healthy)
            word = "healthy\n" if healthy else "unhealthy\n"

            def interrupted(before: int = before) -> bool:
                return intx_line(pf.name)[0] > before

            def follows(word: str = word) -> bool:
                return kernel.read(pf.name, "health") == word

            kernel.eventually(interrupted, f"an INTx for {pf.name} (healthy={healthy})")
            kernel.eventually(follows, "health follows")
    finally:
        kernel.set_health(pf.name, True)


def test_pxb_pcie_pf_health_arrives_through_the_poll(kernel: GuestTarget) -> None:
    """Its server offers MSI only (no Interrupt Pin): without MSI the driver requests no line."""
    pf = pf_placed(kernel, "pxb-pcie")
    assert kernel.server_state(pf.name)["msi_enabled"] is False
    assert pf.name not in Path("/proc/interrupts").read_text().split(), f"{pf.name} has an interrupt line"
    try:
        kernel.set_health(pf.name, False)
        kernel.eventually(lambda: kernel.read(pf.name, "health") == "unhealthy\n", "health follows (poll)")
    finally:
        kernel.set_health(pf.name, True)
    kernel.eventually(lambda: kernel.read(pf.name, "health") == "healthy\n", "health recovers (poll)")
