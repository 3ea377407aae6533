from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mockaccel_common import cdi
from mockaccel_common.model import Device, DeviceKind, PciAddress
from mockaccel_common.regmap import Capability, Status

CLAIM = "0f6b9a52-1c1e-4d53-8f0e-3b4ea4b1d2c7"


def make_device(name: str, physfn: str | None = None) -> Device:
    return Device(
        name=name,
        kind=DeviceKind.VF if physfn else DeviceKind.PF,
        uuid=uuid.uuid5(uuid.NAMESPACE_DNS, name),
        memory_size=16 << 30,
        capabilities=Capability.COMPUTE,
        status=Status.READY,
        numa_node=1,
        pci_address=PciAddress(0, 0x21, 0, 0),
        pcie_root="pci0000:20",
        fw_version="1.2.0",
        physfn=physfn,
    )


def claim_spec(*names: str) -> cdi.CdiSpec:
    devices = tuple(
        cdi.CdiDevice(
            name=f"{CLAIM}-{name}",
            env=cdi.device_env(make_device(name)),
            device_nodes=(cdi.DeviceNode(path=f"/dev/{name}", host_path=f"/dev/{name}"),),
            mounts=(cdi.Mount(f"/sys/class/mock-accel/{name}", f"/sys/class/mock-accel/{name}", ("ro", "bind")),),
        )
        for name in names
    )
    return cdi.CdiSpec(kind=cdi.CDI_KIND, devices=devices)


def test_claim_uid_names_need_cdi_0_5_0() -> None:
    assert cdi.minimum_version(claim_spec("mock0")) == "0.5.0"


def test_plain_spec_needs_only_0_3_0() -> None:
    spec = cdi.CdiSpec(kind="example.com/x", devices=(cdi.CdiDevice(name="a", env=("A=1",)),))
    assert cdi.minimum_version(spec) == "0.3.0"


def test_written_spec_is_complete_json(tmp_path: Path) -> None:
    name = cdi.transient_spec_name(cdi.CDI_KIND, CLAIM)
    path = cdi.write_spec(tmp_path, name, claim_spec("mock0", "mock1v0"))
    assert path.name == f"k8s.mock-accel.example.com-device_{CLAIM}.json"
    document = json.loads(path.read_text())
    assert document["cdiVersion"] == "0.5.0"
    assert document["kind"] == "k8s.mock-accel.example.com/device"
    assert [d["name"] for d in document["devices"]] == [f"{CLAIM}-mock0", f"{CLAIM}-mock1v0"]
    edits = document["devices"][0]["containerEdits"]
    assert edits["deviceNodes"] == [{"path": "/dev/mock0", "hostPath": "/dev/mock0"}]
    assert edits["mounts"][0]["options"] == ["ro", "bind"]
    assert list(tmp_path.iterdir()) == [path]


def test_env_of_several_devices_never_collides() -> None:
    entries = [e.split("=")[0] for name in ("mock0", "mock0v1", "mock1") for e in cdi.device_env(make_device(name))]
    assert len(entries) == len(set(entries))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (cdi.CdiSpec(kind="noslash", devices=(cdi.CdiDevice(name="a"),)), "invalid CDI kind"),
        (cdi.CdiSpec(kind="v/c", devices=()), "at least one device"),
        (cdi.CdiSpec(kind="v/c", devices=(cdi.CdiDevice(name="-bad"),)), "invalid CDI device name"),
        (cdi.CdiSpec(kind="v/c", devices=(cdi.CdiDevice(name="a"), cdi.CdiDevice(name="a"))), "duplicate"),
        (cdi.CdiSpec(kind="v/c", devices=(cdi.CdiDevice(name="a", env=("lower=1",)),)), "environment entry"),
    ],
    ids=["kind", "empty", "name", "duplicate", "env"],
)
def test_specs_a_runtime_would_reject_are_refused(spec: cdi.CdiSpec, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cdi.to_document(spec)


@given(st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9_.:-]{0,40}[A-Za-z0-9])?", fullmatch=True))
def test_valid_names_build(name: str) -> None:
    spec = cdi.CdiSpec(kind=cdi.CDI_KIND, devices=(cdi.CdiDevice(name=name),))
    document = cdi.to_document(spec)
    expected = "0.5.0" if name[0].isdigit() else "0.3.0"
    assert document["cdiVersion"] == expected
