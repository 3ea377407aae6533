"""Where the suite runs: the simulator's tree on the host, or the real driver inside the guest.

Each ``Target`` offers the same operations, so every assertion is written
once. Reads and writes go through the same paths and ``SysfsWriter`` in both
places; what differs is only what stands behind the device: the simulator
engine, or a vfio-server reached through the node's 9p bridge (its control
API, docs/abi.md §7). Kernel-only checks (character devices, poll, module
unload) live in ``*_kernel_test.py`` files that only the guest run collects:
the simulator has no character devices or kernel (docs/abi.md §6).
"""

from __future__ import annotations

import abc
import errno
import os
import time
from collections.abc import Callable
from pathlib import Path

from mockaccel_common import regmap
from mockaccel_common.errors import SysfsError
from mockaccel_common.model import DeviceName
from mockaccel_common.simulator.engine import WORDLIST_FILE, SimulatedNode
from mockaccel_common.simulator.topology import NodeSpec, PfSpec
from mockaccel_common.sysfs import abi
from mockaccel_common.sysfs.writer import SysfsWriter

FIRMWARE_NAME = regmap.FIRMWARE_WORDLIST


class Target(abc.ABC):
    kind: str
    is_kernel: bool

    def __init__(self, root: Path, node: NodeSpec) -> None:
        self.root = root
        self.node = node
        self.writer = SysfsWriter(root)

    # -- sysfs, identical on both ------------------------------------------------

    @property
    def class_dir(self) -> Path:
        return self.root / abi.CLASS_DIR

    def dev_dir(self, device: str) -> Path:
        return self.class_dir / device

    def read(self, device: str, attribute: str) -> str:
        return (self.dev_dir(device) / attribute).read_text()

    def write(self, device: str, attribute: str, text: str) -> None:
        self.writer.write_sync(device, attribute, text)

    def write_errno(self, device: str, attribute: str, text: str) -> int:
        """The errno a write fails with, 0 if it succeeds."""
        try:
            self.write(device, attribute, text)
        except SysfsError as exc:
            if exc.errno is None:
                raise
            return exc.errno
        return 0

    def devices(self) -> list[str]:
        return sorted(p.name for p in self.class_dir.iterdir()) if self.class_dir.is_dir() else []

    def pf_spec(self, device: str) -> PfSpec:
        index = DeviceName.parse(device).pf_index
        return next(pf for pf in self.node.pfs if pf.index == index)

    @staticmethod
    def eventually(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"not true within {timeout} s: {what}")
            time.sleep(0.05)

    # -- what stands behind the device ---------------------------------------------

    @abc.abstractmethod
    def device_status(self, device: str) -> int:
        """STATUS as the device holds it (not through the driver's sysfs)."""

    @abc.abstractmethod
    def set_health(self, device: str, healthy: bool) -> None:
        """Make the device report a fault, or recover (the device's side)."""

    @property
    @abc.abstractmethod
    def firmware_file(self) -> Path:
        """Where the firmware wordlist is found by load_wordlist."""

    def wordlist(self) -> set[str]:
        return set(self.firmware_file.read_text().split())

    def hide_firmware(self) -> None:
        self.firmware_file.rename(self.firmware_file.with_name(".hidden-" + self.firmware_file.name))

    def restore_firmware(self) -> None:
        hidden = self.firmware_file.with_name(".hidden-" + self.firmware_file.name)
        if hidden.exists():
            self.firmware_file.unlink(missing_ok=True)
            hidden.rename(self.firmware_file)

    def corrupt_firmware(self, text: str) -> None:
        """Replace the wordlist with ``text`` (undone by ``restore_firmware``)."""
        self.hide_firmware()
        self.firmware_file.write_text(text)


class SimulatorTarget(Target):
    kind = "simulator"
    is_kernel = False

    @classmethod
    def create(cls, root: Path, node: NodeSpec, wordlist: Path) -> SimulatorTarget:
        SimulatedNode.create(root, node, wordlist)
        return cls(root, node)

    def device_status(self, device: str) -> int:
        return abi.parse_status(self.read(device, "status"))

    def set_health(self, device: str, healthy: bool) -> None:
        SimulatedNode.open(self.root).set_health(device, healthy)

    @property
    def firmware_file(self) -> Path:
        return self.root / WORDLIST_FILE


class GuestTarget(Target):
    """The real driver's /sys, with the devices' side reached through the node's bridge."""

    kind = "guest"
    is_kernel = True

    def __init__(self, node: NodeSpec, share: Path, firmware_dir: Path, module: Path) -> None:
        from mockaccel_node.bridge import BridgeClient

        super().__init__(Path("/sys"), node)
        self.bridge = BridgeClient(share)
        self.firmware_dir = firmware_dir
        self.module = module

    def _control(self, device: str, request: dict[str, object]) -> dict[str, object]:
        name = DeviceName.parse(device)
        reply = self.bridge.request(name.physfn, request)
        if not reply.get("ok"):
            raise OSError(errno.EIO, f"control API refused {request} for {device}: {reply}")
        return reply

    def device_status(self, device: str) -> int:
        vf = DeviceName.parse(device).vf_index
        offset = regmap.register("STATUS").offset if vf is None else regmap.vf_status_offset(vf)
        value = self._control(device, {"op": "read", "offset": offset, "width": 4})["value"]
        assert isinstance(value, int)
        return value

    def set_health(self, device: str, healthy: bool) -> None:
        vf = DeviceName.parse(device).vf_index
        self._control(device, {"op": "health", "function": "pf" if vf is None else vf, "healthy": healthy})

    def device_register(self, device: str, offset: int) -> int:
        """A 32-bit BAR0 register of the device's PF, as the device holds it."""
        value = self._control(device, {"op": "read", "offset": offset, "width": 4})["value"]
        assert isinstance(value, int)
        return value

    def fault(self, device: str, kind: str, enabled: bool) -> None:
        """Inject (or end) a fault of the device's PF: ``fail_reads``, ``fail_writes``."""
        self._control(device, {"op": "fault", "kind": kind, "enabled": enabled})

    def server_state(self, device: str) -> dict[str, object]:
        state = self._control(device, {"op": "state"})["state"]
        assert isinstance(state, dict)
        return state

    @property
    def firmware_file(self) -> Path:
        return self.firmware_dir / FIRMWARE_NAME


def target_from_env(tmp_root: Callable[[], Path]) -> Target:
    """``MOCKACCEL_CONFORMANCE_TARGET=guest`` inside the emulated node; the simulator otherwise."""
    from mockaccel_conformance.topology import conformance_node

    node = conformance_node()
    if os.environ.get("MOCKACCEL_CONFORMANCE_TARGET", "simulator") == "guest":
        return GuestTarget(
            node,
            share=Path(os.environ["MOCKACCEL_SHARE"]),
            firmware_dir=Path(os.environ["MOCKACCEL_FIRMWARE_DIR"]),
            module=Path(os.environ["MOCKACCEL_MODULE"]),
        )
    wordlist = os.environ.get("MOCKACCEL_WORDLIST", "")
    if not wordlist or not Path(wordlist).is_file():
        raise RuntimeError("MOCKACCEL_WORDLIST is not set or missing: run tools/provision/wordlist.sh")
    return SimulatorTarget.create(tmp_root() / "sys", node, Path(wordlist))
