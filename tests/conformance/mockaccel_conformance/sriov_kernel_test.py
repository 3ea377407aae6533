"""The PCI function's own sriov_numvfs drives the same VFs (kernel only: the driver adds it)."""

from __future__ import annotations

import errno

import pytest

from mockaccel_conformance.target import GuestTarget


def _vfs_of(target: GuestTarget, pf: str) -> list[str]:
    return [d for d in target.devices() if d.startswith(pf + "v")]


def test_pci_function_sriov_numvfs_drives_the_same_vfs(kernel: GuestTarget) -> None:
    pf = kernel.node.pfs[3].name
    pci = kernel.dev_dir(pf) / "device" / "sriov_numvfs"
    pci.write_text("2")
    assert _vfs_of(kernel, pf) == [f"{pf}v0", f"{pf}v1"]
    assert kernel.read(pf, "sriov_numvfs") == "2\n"
    with pytest.raises(OSError, match=rf"\[Errno {errno.EBUSY}\]"):
        pci.write_text("3")
    pci.write_text("0")
    assert _vfs_of(kernel, pf) == []
