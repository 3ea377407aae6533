"""Materialise and mutate a simulated ``/sys`` tree for one node.

The layout mirrors what the kernel builds for the driver (docs/abi.md):

    <root>/devices/pci0000:10/0000:10:00.0/0000:11:00.0/          PCI function
        numa_node, vendor, device, class, sriov_totalvfs, sriov_numvfs
        mock-accel/mock0/                                         class device
            uuid, memory_size, …, device -> ../../../0000:11:00.0
        mock-accel/mock0v0/                                       VF class device
            …, device -> ../../../0000:11:00.0, physfn -> ../mock0
    <root>/class/mock-accel/mock0 -> ../../devices/…/mock-accel/mock0

Every file is written atomically (temp file + rename), so a concurrent reader
never sees a half-written attribute.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from mockaccel_common import regmap
from mockaccel_common.model import DeviceKind, format_version, vf_pci_address, vf_uuid
from mockaccel_common.regmap import Capability, Status
from mockaccel_common.simulator.topology import NodeSpec, PfSpec, pci_layout
from mockaccel_common.sysfs import abi

PF_CAPABILITIES = Capability.COMPUTE | Capability.PASSPHRASE | Capability.SRIOV | Capability.HEALTH_IRQ
VF_CAPABILITIES = Capability.COMPUTE | Capability.PASSPHRASE | Capability.HEALTH_IRQ
CHAR_MAJOR = 240  # a dynamic major as the driver would get (the ``dev`` attribute)
# Device nodes of a simulated node: ``<root>/dev/<name>``, character devices with the
# numbers of /dev/null (1:3), so a container runtime can create ``/dev/<name>`` in a
# container from them (docs/abi.md §8.5). Reads give EOF, writes are discarded.
DEV_DIR = "dev"
DEVICE_NODE_NUMBERS = (1, 3)


def overwrite_fixed_width(path: Path, text: str) -> bool:
    """Overwrite an attribute of fixed width (``status``: ``0x%08x``) in place, as sysfs does.

    No temp file and no rename: a status write is on every prepare and
    unprepare, and renames in a busy file system cost milliseconds. A reader
    racing the write sees old or new bytes (both fixed-width hex, so it
    always parses), and a watcher gets IN_MODIFY. False, with nothing
    written, when the file is missing or of another width; the caller then
    replaces it.
    """
    data = text.encode("ascii")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        if os.fstat(fd).st_size != len(data):
            return False
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)
    return True


def write_attribute(path: Path, text: str, mode: int = 0o444) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _symlink(target: str, link: Path) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(target, link)


def pci_dir_of(root: Path, pf: PfSpec) -> Path:
    placement = pci_layout(pf)
    address = placement.address
    port = placement.root_port
    return root / "devices" / placement.pcie_root / str(port) / str(address)


PASSPHRASE_ATTRIBUTES = (
    "passphrase_length",
    "passphrase_generate",
    "passphrase_status",
    "passphrase_count",
    "passphrase",
)


def _class_attributes(
    *,
    kind: DeviceKind,
    uuid_text: str,
    memory: int,
    capabilities: Capability,
    numa_node: int,
    pci_address: str,
    minor: int,
    wordlist_words: int,
) -> dict[str, tuple[str, int]]:
    status = Status.READY
    attrs: dict[str, tuple[str, int]] = {
        "uuid": (uuid_text + "\n", 0o444),
        "memory_size": (abi.format_u64(memory), 0o444),
        "capabilities": (abi.format_hex32(int(capabilities)), 0o444),
        "status": (abi.format_hex32(int(status)), 0o644),
        "health": (abi.format_health(status), 0o444),
        "numa_node": (abi.format_int(numa_node), 0o444),
        "pci_address": (pci_address + "\n", 0o444),
        "device_type": (f"{kind.value}\n", 0o444),
        "fw_version": (format_version(regmap.FW_VERSION) + "\n", 0o444),
        "wordlist_loaded": ("1\n" if wordlist_words else "0\n", 0o444),
        "wordlist_words": (abi.format_int(wordlist_words), 0o444),
        "load_wordlist": ("", 0o200),
        "passphrase_length": (abi.format_int(regmap.PASSPHRASE_DEFAULT_WORDS), 0o644),
        "passphrase_generate": ("", 0o200),
        "passphrase_status": ("idle\n", 0o444),
        "passphrase_count": ("0\n", 0o444),
        "passphrase": ("\n", 0o444),
        "dev": (f"{CHAR_MAJOR}:{minor}\n", 0o444),
    }
    return attrs


def _create_class_device(
    root: Path, dev_dir: Path, name: str, attrs: dict[str, tuple[str, int]], links: dict[str, str] | None = None
) -> None:
    """Build the device directory completely, then publish it with its class link (the last step).

    A scan that sees the class link must find a whole device: a VF whose
    ``physfn`` link appeared after its class link was skipped by a scan in
    between, and no later event announced it (a flaky health-stream test).
    """
    dev_dir.mkdir(parents=True, exist_ok=True)
    for attr, (text, mode) in attrs.items():
        write_attribute(dev_dir / attr, text, mode)
    _symlink("../../../" + dev_dir.parent.parent.name, dev_dir / "device")
    for link, target in (links or {}).items():
        _symlink(target, dev_dir / link)
    class_dir = root / abi.CLASS_DIR
    class_dir.mkdir(parents=True, exist_ok=True)
    _symlink(os.path.relpath(dev_dir, class_dir), class_dir / name)
    make_device_node(root, name)


def device_node_path(root: Path, name: str) -> Path:
    return root / DEV_DIR / name


def make_device_node(root: Path, name: str) -> None:
    """``<root>/dev/<name>`` as a 1:3 character device; skipped without CAP_MKNOD."""
    path = device_node_path(root, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_char_device():
        return
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(*DEVICE_NODE_NUMBERS))
    except FileExistsError:
        path.unlink()
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(*DEVICE_NODE_NUMBERS))
    except PermissionError:
        # Unprivileged simulations (unit tests) have no device nodes; only a
        # container runtime needs them, and it runs as root.
        return


def create_pf(root: Path, pf: PfSpec, wordlist_words: int = 0) -> None:
    pci_dir = pci_dir_of(root, pf)
    pci_dir.mkdir(parents=True, exist_ok=True)
    pci_attrs = {
        "vendor": f"0x{regmap.PCI_VENDOR_ID:04x}\n",
        "device": f"0x{regmap.PCI_DEVICE_ID_PF:04x}\n",
        "class": f"0x{regmap.PCI_CLASS_CODE:06x}\n",
        "numa_node": abi.format_int(pf.numa_node),
        "sriov_totalvfs": abi.format_int(pf.total_vfs),
        "sriov_numvfs": "0\n",
    }
    for attr, text in pci_attrs.items():
        write_attribute(pci_dir / attr, text, 0o644 if attr == "sriov_numvfs" else 0o444)
    attrs = _class_attributes(
        kind=DeviceKind.PF,
        uuid_text=str(pf.uuid),
        memory=pf.memory,
        capabilities=PF_CAPABILITIES if pf.total_vfs else PF_CAPABILITIES & ~Capability.SRIOV,
        numa_node=pf.numa_node,
        pci_address=str(pci_layout(pf).address),
        minor=pf.index * (regmap.MAX_VFS + 1),
        wordlist_words=wordlist_words,
    )
    attrs["sriov_totalvfs"] = (abi.format_int(pf.total_vfs), 0o444)
    attrs["sriov_numvfs"] = ("0\n", 0o644)
    _create_class_device(root, pci_dir / abi.CLASS_NAME / pf.name, pf.name, attrs)


def create_vf(root: Path, pf: PfSpec, vf_index: int, wordlist_words: int = 0) -> None:
    """A VF class device; like the driver's, its passphrase attributes show the PF's engine."""
    pci_dir = pci_dir_of(root, pf)
    name = f"{pf.name}v{vf_index}"
    numa = pf.numa_node
    attrs = _class_attributes(
        kind=DeviceKind.VF,
        uuid_text=str(vf_uuid(pf.uuid, vf_index)),
        memory=pf.vf_memory,
        capabilities=VF_CAPABILITIES,
        numa_node=numa,
        pci_address=str(vf_pci_address(pci_layout(pf).address, vf_index)),
        minor=pf.index * (regmap.MAX_VFS + 1) + 1 + vf_index,
        wordlist_words=wordlist_words,
    )
    attrs["vf_index"] = (abi.format_int(vf_index), 0o444)
    pf_dir = pci_dir / abi.CLASS_NAME / pf.name
    for attribute in PASSPHRASE_ATTRIBUTES:
        attrs[attribute] = ((pf_dir / attribute).read_text(encoding="ascii"), attrs[attribute][1])
    dev_dir = pci_dir / abi.CLASS_NAME / name
    _create_class_device(root, dev_dir, name, attrs, links={"physfn": f"../{pf.name}"})


def remove_class_device(root: Path, name: str) -> None:
    link = root / abi.CLASS_DIR / name
    try:
        target = Path(os.path.realpath(link, strict=True))
    except OSError:
        return
    link.unlink()
    with contextlib.suppress(FileNotFoundError):
        device_node_path(root, name).unlink()
    for entry in target.iterdir():
        entry.unlink()
    target.rmdir()


def materialise(root: Path, node: NodeSpec, wordlist_words: int = 0) -> None:
    """Create the tree of ``node`` under ``root`` (which must not hold another node).

    ``wordlist_words``: the firmware the driver loaded at probe (0: none).
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / abi.CLASS_DIR).mkdir(parents=True, exist_ok=True)
    for pf in node.pfs:
        create_pf(root, pf, wordlist_words)
