"""CDI specs for prepared claims: pure building, minimum version, atomic writing.

There is no CDI library for Python, so the rules live here: the JSON shape of
the CDI specification, the name rules of its parser, and the version each
feature needs. We write the *minimum* ``cdiVersion`` the content requires,
because runtimes reject versions newer than their library knows (the
original driver hard-coded 0.8.0 and so broke containerd < 1.7.2x).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from mockaccel_common.atomic import atomic_write_bytes
from mockaccel_common.model import Device

CDI_VENDOR = "k8s.mock-accel.example.com"
CDI_CLASS = "device"
CDI_KIND = f"{CDI_VENDOR}/{CDI_CLASS}"

_VENDOR_CLASS_RE = re.compile(r"^[A-Za-z]([A-Za-z0-9_.-]*[A-Za-z0-9])?$")
_DEVICE_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.:-]*[A-Za-z0-9])?$")
_ENV_NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


@dataclass(frozen=True)
class DeviceNode:
    path: str
    host_path: str | None = None
    type: str | None = None
    permissions: str | None = None


@dataclass(frozen=True)
class Mount:
    host_path: str
    container_path: str
    options: tuple[str, ...] = ()
    type: str | None = None


@dataclass(frozen=True)
class CdiDevice:
    name: str
    env: tuple[str, ...] = ()
    device_nodes: tuple[DeviceNode, ...] = ()
    mounts: tuple[Mount, ...] = ()


@dataclass(frozen=True)
class CdiSpec:
    kind: str
    devices: tuple[CdiDevice, ...]
    annotations: dict[str, str] = field(default_factory=dict)

    def qualified_name(self, device: CdiDevice) -> str:
        return f"{self.kind}={device.name}"


def validate(spec: CdiSpec) -> None:
    """Raise ValueError when a runtime's CDI parser would reject the spec."""
    vendor, _, klass = spec.kind.partition("/")
    if not (_VENDOR_CLASS_RE.match(vendor) and _VENDOR_CLASS_RE.match(klass)):
        raise ValueError(f"invalid CDI kind {spec.kind!r}")
    if not spec.devices:
        raise ValueError("a CDI spec needs at least one device")
    seen: set[str] = set()
    for device in spec.devices:
        if not _DEVICE_NAME_RE.match(device.name) or len(device.name) > 63:
            raise ValueError(f"invalid CDI device name {device.name!r}")
        if device.name in seen:
            raise ValueError(f"duplicate CDI device name {device.name!r}")
        seen.add(device.name)
        for entry in device.env:
            name, sep, _ = entry.partition("=")
            if not sep or not _ENV_NAME_RE.match(name):
                raise ValueError(f"invalid environment entry {entry!r}")


def minimum_version(spec: CdiSpec) -> str:
    """The lowest cdiVersion whose schema covers everything in ``spec``."""
    required = "0.3.0"

    def need(version: str) -> None:
        nonlocal required
        if _version_key(version) > _version_key(required):
            required = version

    vendor, _, klass = spec.kind.partition("/")
    if "." in klass:
        need("0.6.0")
    if spec.annotations:
        need("0.6.0")
    for device in spec.devices:
        if device.name[:1].isdigit():
            need("0.5.0")
        if any(node.host_path for node in device.device_nodes):
            need("0.5.0")
        if any(mount.type for mount in device.mounts):
            need("0.4.0")
    return required


def _edits(device: CdiDevice) -> dict[str, object]:
    edits: dict[str, object] = {}
    if device.env:
        edits["env"] = list(device.env)
    if device.device_nodes:
        nodes = []
        for node in device.device_nodes:
            entry: dict[str, object] = {"path": node.path}
            if node.host_path:
                entry["hostPath"] = node.host_path
            if node.type:
                entry["type"] = node.type
            if node.permissions:
                entry["permissions"] = node.permissions
            nodes.append(entry)
        edits["deviceNodes"] = nodes
    if device.mounts:
        mounts = []
        for mount in device.mounts:
            item: dict[str, object] = {"hostPath": mount.host_path, "containerPath": mount.container_path}
            if mount.type:
                item["type"] = mount.type
            if mount.options:
                item["options"] = list(mount.options)
            mounts.append(item)
        edits["mounts"] = mounts
    return edits


def to_document(spec: CdiSpec) -> dict[str, object]:
    validate(spec)
    document: dict[str, object] = {"cdiVersion": minimum_version(spec), "kind": spec.kind}
    if spec.annotations:
        document["annotations"] = dict(spec.annotations)
    document["devices"] = [{"name": d.name, "containerEdits": _edits(d)} for d in spec.devices]
    return document


def transient_spec_name(kind: str, transient_id: str) -> str:
    """``vendor-class_<id>.json``, the CDI library's GenerateTransientSpecName."""
    vendor, _, klass = kind.partition("/")
    return f"{vendor}-{klass}_{transient_id}.json".replace("/", "_")


def write_spec(directory: Path, file_name: str, spec: CdiSpec, *, durable: bool = True) -> Path:
    """Write ``spec`` atomically; ``durable`` as in ``atomic_write_bytes``."""
    path = directory / file_name
    # One line: json's C encoder serves only unindented output; indenting ran the pure
    # Python encoder, ~9x slower, on every prepare. Runtimes and jq read it alike.
    payload = json.dumps(to_document(spec)).encode() + b"\n"
    atomic_write_bytes(path, payload, 0o644, durable=durable)
    return path


def env_prefix(device_name: str) -> str:
    """``MOCK_ACCEL_MOCK0V1_`` — per-device keys, so several devices never collide."""
    return f"MOCK_ACCEL_{device_name.upper()}_"


def device_env(device: Device) -> tuple[str, ...]:
    prefix = env_prefix(device.name)
    entries = [
        f"{prefix}UUID={device.uuid}",
        f"{prefix}PCI_ADDRESS={device.pci_address}",
        f"{prefix}TYPE={device.kind.value}",
        f"{prefix}MEMORY_SIZE={device.memory_size}",
        f"{prefix}NUMA_NODE={device.numa_node if device.numa_node is not None else -1}",
    ]
    if device.physfn:
        entries.append(f"{prefix}PHYSFN={device.physfn}")
    return tuple(entries)
