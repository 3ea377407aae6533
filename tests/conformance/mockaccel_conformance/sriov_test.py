"""SR-IOV as users expect it: sriov_numvfs creates mockNvM with a physfn link, 0 removes them."""

from __future__ import annotations

import errno
import os

from mockaccel_conformance.target import Target


def _vfs_of(target: Target, pf: str) -> list[str]:
    return [d for d in target.devices() if d.startswith(pf + "v")]


def test_enable_creates_vfs_with_physfn_and_pci_parent(target: Target) -> None:
    pf = target.node.pfs[0].name
    target.write(pf, "sriov_numvfs", "4")
    assert _vfs_of(target, pf) == [f"{pf}v{m}" for m in range(4)]
    assert target.read(pf, "sriov_numvfs") == "4\n"
    assert (target.dev_dir(pf) / "device" / "sriov_numvfs").read_text() == "4\n"
    for m in range(4):
        vf_dir = target.dev_dir(f"{pf}v{m}")
        assert os.readlink(vf_dir / "physfn") == f"../{pf}"
        assert (vf_dir / "physfn").resolve() == target.dev_dir(pf).resolve()
        assert (vf_dir / "device").resolve() == (target.dev_dir(pf) / "device").resolve()
    others = [p.name for p in target.node.pfs[1:]]
    assert all(not _vfs_of(target, other) for other in others)


def test_pci_core_rules(target: Target) -> None:
    pf = target.node.pfs[1].name
    target.write(pf, "sriov_numvfs", "2")
    before = {vf: target.read(vf, "uuid") for vf in _vfs_of(target, pf)}
    assert target.write_errno(pf, "sriov_numvfs", "2") == 0, "same value is a no-op"
    assert {vf: target.read(vf, "uuid") for vf in _vfs_of(target, pf)} == before
    assert target.write_errno(pf, "sriov_numvfs", "3") == errno.EBUSY
    assert target.write_errno(pf, "sriov_numvfs", "5") == errno.ERANGE
    assert _vfs_of(target, pf) == [f"{pf}v0", f"{pf}v1"]
    target.write(pf, "sriov_numvfs", "0")
    assert _vfs_of(target, pf) == []
    target.write(pf, "sriov_numvfs", "3")
    assert len(_vfs_of(target, pf)) == 3


def test_disable_refused_while_a_vf_is_allocated(target: Target) -> None:
    pf = target.node.pfs[2].name
    target.write(pf, "sriov_numvfs", "2")
    target.write(f"{pf}v1", "status", "1")
    assert target.write_errno(pf, "sriov_numvfs", "0") == errno.EBUSY
    assert _vfs_of(target, pf) == [f"{pf}v0", f"{pf}v1"]
    assert target.read(f"{pf}v1", "status") == "0x00000003\n"
    target.write(f"{pf}v1", "status", "0")
    target.write(pf, "sriov_numvfs", "0")
    assert _vfs_of(target, pf) == []
    assert target.read(pf, "sriov_numvfs") == "0\n"
