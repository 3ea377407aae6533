"""Attribute sets, modes and read formats of PFs and VFs (docs/abi.md §5.4)."""

from __future__ import annotations

import stat
import uuid

import pytest

from mockaccel_common import regmap
from mockaccel_common.model import vf_pci_address, vf_uuid
from mockaccel_common.regmap import Capability, Status
from mockaccel_common.simulator.topology import pci_layout
from mockaccel_common.sysfs import abi
from mockaccel_conformance.target import Target

# Files the driver core adds to every class device; not part of our table.
STANDARD_FILES = {"dev", "uevent"}
PF_CAPS = Capability.COMPUTE | Capability.PASSPHRASE | Capability.SRIOV | Capability.HEALTH_IRQ


def _attribute_modes(target: Target, device: str) -> dict[str, int]:
    found = {}
    for path in target.dev_dir(device).iterdir():
        st = path.lstat()
        if stat.S_ISREG(st.st_mode) and path.name not in STANDARD_FILES and not path.name.startswith("."):
            found[path.name] = stat.S_IMODE(st.st_mode)
    return found


@pytest.mark.parametrize("kind_is_vf", [False, True], ids=["pf", "vf"])
def test_attribute_names_and_modes(target: Target, kind_is_vf: bool) -> None:
    pf = target.node.pfs[0]
    device = pf.name
    if kind_is_vf:
        target.write(pf.name, "sriov_numvfs", "1")
        device = f"{pf.name}v0"
    expected = {a.name: a.mode for a in abi.attributes_for(kind_is_vf)}
    assert _attribute_modes(target, device) == expected


def test_pf_formats(target: Target) -> None:
    for pf in target.node.pfs:

        def read(attr: str, name: str = pf.name) -> str:
            return target.read(name, attr)

        assert abi.parse_uuid(read("uuid")) == pf.uuid
        assert read("memory_size") == "17179869184\n"
        assert abi.parse_capabilities(read("capabilities")) == PF_CAPS
        assert read("status") == "0x00000002\n"
        assert abi.parse_status(read("status")) == Status.READY
        assert read("health") == "healthy\n"
        assert read("device_type") == "pf\n"
        assert read("fw_version") == "1.2.0\n"
        assert read("sriov_totalvfs") == "4\n"
        assert read("sriov_numvfs") == "0\n"
        assert read("passphrase_length") == f"{regmap.PASSPHRASE_DEFAULT_WORDS}\n"
        assert read("passphrase_status") in {f"{s}\n" for s in abi.PASSPHRASE_STATES}
        assert abi.parse_u64(read("passphrase_count")) >= 0


def test_pci_function_has_the_sriov_files(target: Target) -> None:
    for pf in target.node.pfs:
        pci = target.dev_dir(pf.name) / "device"
        assert (pci / "sriov_totalvfs").read_text() == "4\n"
        assert (pci / "sriov_numvfs").read_text() == "0\n"
        assert stat.S_IMODE((pci / "sriov_numvfs").stat().st_mode) == 0o644
        assert stat.S_IMODE((pci / "sriov_totalvfs").stat().st_mode) == 0o444


def test_vf_formats(target: Target) -> None:
    pf = target.node.pfs[2]
    target.write(pf.name, "sriov_numvfs", "3")
    for m in range(3):
        name = f"{pf.name}v{m}"
        assert abi.parse_uuid(target.read(name, "uuid")) == vf_uuid(pf.uuid, m)
        assert isinstance(vf_uuid(pf.uuid, m), uuid.UUID)
        assert target.read(name, "memory_size") == f"{2 << 30}\n"
        assert abi.parse_capabilities(target.read(name, "capabilities")) == PF_CAPS & ~Capability.SRIOV
        assert target.read(name, "status") == "0x00000002\n"
        assert target.read(name, "health") == "healthy\n"
        assert target.read(name, "device_type") == "vf\n"
        assert target.read(name, "vf_index") == f"{m}\n"
        assert target.read(name, "numa_node") == f"{pf.numa_node}\n"
        assert target.read(name, "pci_address") == f"{vf_pci_address(pci_layout(pf).address, m)}\n"
        assert target.read(name, "fw_version") == "1.2.0\n"
