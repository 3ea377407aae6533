"""The simulator's behaviour: writes are validated and applied as the driver would.

State lives in the tree itself plus a marker file holding the node's
topology, so any number of processes can share one simulated node. Every
mutation holds an exclusive ``flock`` on the tree, which serialises
concurrent writers the way the driver's per-device mutex does.

Two wordlists, as on a real node: the driver's firmware (``WORDLIST_FILE``:
``load_wordlist``, ``wordlist_loaded``, ``wordlist_words``) and the device's
own list, from which its passphrase engine draws (``DEVICE_WORDLIST_FILE``;
the vfio-server's ``--wordlist``). ``passphrase_generate`` never reads the
firmware, so hiding or replacing the firmware does not change it, exactly as
with the real stack; both engines draw with mockaccel_common.passphrase.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mockaccel_common import regmap
from mockaccel_common.errors import SysfsError, TopologyError, WordlistError
from mockaccel_common.model import DeviceName
from mockaccel_common.passphrase import Wordlist, choose_words
from mockaccel_common.regmap import Status
from mockaccel_common.simulator import tree
from mockaccel_common.simulator.topology import NodeSpec, PfSpec, Topology, dumps_topology, loads_topology
from mockaccel_common.sysfs import abi

# attribute name -> its ABI entry, for VFs (True) and PFs (False)
_ATTRIBUTES = {is_vf: {a.name: a for a in abi.attributes_for(is_vf)} for is_vf in (False, True)}

LOCK_FILE = ".mockaccel-sim.lock"
WORDLIST_FILE = ".mockaccel-sim-wordlist"  # the driver's firmware
DEVICE_WORDLIST_FILE = ".mockaccel-sim-device-wordlist"  # the device's passphrase engine


class SimulatedNode:
    """A simulated node's sysfs tree, opened by root directory."""

    def __init__(self, root: Path, node: NodeSpec) -> None:
        self.root = root
        self.node = node

    # --- lifecycle ---------------------------------------------------------

    @classmethod
    def create(
        cls, root: Path, node: NodeSpec, wordlist: Path | None = None, device_wordlist: Path | None = None
    ) -> SimulatedNode:
        """Materialise ``node`` under ``root``.

        ``wordlist`` is the firmware file; ``device_wordlist`` the device engine's list,
        by default the same file, as the emulated node gives one provisioned list to
        both the guest's firmware folder and every vfio-server.
        """
        device_wordlist = wordlist if device_wordlist is None else device_wordlist
        if (root / abi.SIM_MARKER).exists() or (root / abi.CLASS_DIR).exists():
            raise SysfsError(f"{root} already holds a mock-accel tree", path=str(root), errno=errno.EEXIST)
        sim = cls(root, node)
        root.mkdir(parents=True, exist_ok=True)
        with sim._locked():
            if wordlist is not None:
                shutil.copyfile(wordlist, root / WORDLIST_FILE)
            if device_wordlist is not None:
                shutil.copyfile(device_wordlist, root / DEVICE_WORDLIST_FILE)
            # Like the driver, which loads the firmware once at probe.
            words = sim._wordlist()
            tree.materialise(root, node, len(words) if words else 0)
            tree.write_attribute(root / abi.SIM_MARKER, dumps_topology(Topology((node,))), 0o644)
        return sim

    @classmethod
    def open(cls, root: Path) -> SimulatedNode:
        try:
            text = (root / abi.SIM_MARKER).read_text(encoding="utf-8")
        except OSError as exc:
            raise SysfsError(f"{root} is not a simulated sysfs tree", path=str(root), errno=exc.errno) from exc
        try:
            topology = loads_topology(text)
        except TopologyError as exc:
            raise SysfsError(f"corrupt simulator marker in {root}: {exc}", path=str(root)) from exc
        return cls(root, topology.nodes[0])

    @staticmethod
    def is_simulated(root: Path) -> bool:
        return (root / abi.SIM_MARKER).is_file()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # --- helpers -------------------------------------------------------------

    def _device_dir(self, name: str) -> Path:
        link = self.root / abi.CLASS_DIR / name
        if not link.is_dir():
            raise SysfsError(f"no such device {name}", path=str(link), errno=errno.ENOENT)
        return link

    def _pf(self, name: DeviceName) -> PfSpec:
        for pf in self.node.pfs:
            if pf.index == name.pf_index:
                return pf
        raise SysfsError(f"no such PF mock{name.pf_index}", errno=errno.ENODEV)

    def _read(self, path: Path) -> str:
        # os-level: a text-mode open costs more than the read itself, on every status write
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            while chunk := os.read(fd, 4096):
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks).decode("ascii")

    def _set_status(self, dev_dir: Path, status: Status, previous: Status) -> None:
        """Replace ``status``; replace ``health`` only when its text changes.

        As the driver, which notifies ``health`` only when the UNHEALTHY bit
        flips: a watcher of ``health`` (the node agent's health feed) is not
        woken by status writes that leave the health as it was (every prepare
        and unprepare sets or clears ALLOCATED).
        """
        text = abi.format_hex32(int(status))
        if not tree.overwrite_fixed_width(dev_dir / "status", text):
            tree.write_attribute(dev_dir / "status", text, 0o644)
        health = abi.format_health(status)
        if health != abi.format_health(previous):
            tree.write_attribute(dev_dir / "health", health, 0o444)

    # --- the write paths ---------------------------------------------------

    def write(self, device: str, attribute: str, text: str) -> None:
        """Apply a user-space write; raises SysfsError with the driver's errno."""
        path = self.root / abi.CLASS_DIR / device / attribute
        with self._locked():
            dev_dir = self._device_dir(device)
            name = DeviceName.parse(device)
            known = _ATTRIBUTES[name.vf_index is not None]
            spec = known.get(attribute)
            if spec is None:
                raise SysfsError(f"{device} has no attribute {attribute}", path=str(path), errno=errno.ENOENT)
            if not spec.mode & 0o200:
                raise SysfsError(f"{attribute} is read-only", path=str(path), errno=errno.EACCES)
            if name.vf_index is not None and attribute.startswith("passphrase"):
                dev_dir = self._device_dir(name.physfn)  # a VF uses its PF's engine
            handler = getattr(self, f"_write_{attribute}")
            handler(dev_dir, name, text, str(path))

    def _write_status(self, dev_dir: Path, name: DeviceName, text: str, path: str) -> None:
        requested = abi.parse_status_write(text, path)
        current = abi.parse_status(self._read(dev_dir / "status"))
        self._set_status(dev_dir, (current & ~regmap.STATUS_WRITABLE) | requested, current)

    def _write_sriov_numvfs(self, dev_dir: Path, name: DeviceName, text: str, path: str) -> None:
        pf = self._pf(name)
        current = int(self._read(dev_dir / "sriov_numvfs"))
        wanted = abi.parse_numvfs_write(text, current=current, total=pf.total_vfs, path=path)
        if wanted == current:
            return
        if wanted == 0:
            for vf_index in range(current):
                vf_dir = self.root / abi.CLASS_DIR / f"{pf.name}v{vf_index}"
                if Status.ALLOCATED in abi.parse_status(self._read(vf_dir / "status")):
                    raise SysfsError(
                        f"{pf.name}v{vf_index} is allocated; free it before disabling VFs", path=path, errno=errno.EBUSY
                    )
            for vf_index in range(current):
                tree.remove_class_device(self.root, f"{pf.name}v{vf_index}")
        else:
            words = int(self._read(dev_dir / "wordlist_words"))
            for vf_index in range(wanted):
                tree.create_vf(self.root, pf, vf_index, words)
        tree.write_attribute(dev_dir / "sriov_numvfs", abi.format_int(wanted), 0o644)
        tree.write_attribute(tree.pci_dir_of(self.root, pf) / "sriov_numvfs", abi.format_int(wanted), 0o644)

    def _set_engine_attribute(self, pf_dir: Path, attribute: str, text: str, mode: int = 0o444) -> None:
        """The PF's passphrase engine state, shown by the PF and each of its VFs."""
        tree.write_attribute(pf_dir / attribute, text, mode)
        prefix = pf_dir.name + "v"
        for device in os.listdir(self.root / abi.CLASS_DIR):
            if device.startswith(prefix):
                tree.write_attribute(self.root / abi.CLASS_DIR / device / attribute, text, mode)

    def _write_passphrase_length(self, dev_dir: Path, name: DeviceName, text: str, path: str) -> None:
        length = abi.parse_passphrase_length_write(text, path)
        self._set_engine_attribute(dev_dir, "passphrase_length", abi.format_int(length), 0o644)

    def _wordlist(self) -> list[str] | None:
        words, _ = self._load_wordlist()
        return words

    def _load_wordlist(self) -> tuple[list[str] | None, int]:
        """The words, or None and the driver's errno: ENOENT if missing, EINVAL if malformed."""
        try:
            words = (self.root / WORDLIST_FILE).read_text(encoding="ascii").split()
        except FileNotFoundError:
            return None, errno.ENOENT
        except (OSError, UnicodeDecodeError):
            return None, errno.EINVAL
        if len(words) != regmap.WORDLIST_WORDS:
            return None, errno.EINVAL
        return words, 0

    def _device_wordlist(self) -> Wordlist | None:
        """The device engine's list; None (the engine reports an error) if absent or malformed."""
        try:
            return Wordlist.parse((self.root / DEVICE_WORDLIST_FILE).read_bytes(), DEVICE_WORDLIST_FILE)
        except (OSError, WordlistError):
            return None

    def _write_passphrase_generate(self, dev_dir: Path, name: DeviceName, text: str, path: str) -> None:
        abi.parse_trigger_write(text, path)
        words = self._device_wordlist()
        length = int(self._read(dev_dir / "passphrase_length"))
        phrase = " ".join(choose_words(words.words, length)) if words is not None else ""
        if not phrase or len(phrase) >= regmap.PASSPHRASE_BUFFER_SIZE:  # the device keeps room for a NUL
            self._set_engine_attribute(dev_dir, "passphrase_status", "error\n")
            return
        self._set_engine_attribute(dev_dir, "passphrase", phrase + "\n")
        self._set_engine_attribute(dev_dir, "passphrase_count", abi.format_int(length))
        self._set_engine_attribute(dev_dir, "passphrase_status", "ready\n")

    def _write_load_wordlist(self, dev_dir: Path, name: DeviceName, text: str, path: str) -> None:
        """Reload the one wordlist every function shares, as the driver does."""
        abi.parse_trigger_write(text, path)
        words, err = self._load_wordlist()
        count = len(words) if words else 0
        for device in os.listdir(self.root / abi.CLASS_DIR):
            device_dir = self.root / abi.CLASS_DIR / device
            tree.write_attribute(device_dir / "wordlist_loaded", "1\n" if count else "0\n")
            tree.write_attribute(device_dir / "wordlist_words", abi.format_int(count))
        if err == errno.ENOENT:
            raise SysfsError("firmware mock-accel-wordlist.txt not found", path=path, errno=errno.ENOENT)
        if err:
            raise SysfsError("firmware mock-accel-wordlist.txt is malformed", path=path, errno=err)

    # --- what the device or the platform does ------------------------------

    def set_health(self, device: str, healthy: bool) -> None:
        """The device reports a fault (or recovers), as fault injection would make it."""
        with self._locked():
            dev_dir = self._device_dir(device)
            current = abi.parse_status(self._read(dev_dir / "status"))
            updated = current & ~Status.UNHEALTHY if healthy else current | Status.UNHEALTHY
            if updated != current:
                self._set_status(dev_dir, updated, current)

    def remove_pf(self, device: str) -> None:
        """Hot-unplug a PF and its VFs (the driver's remove path)."""
        name = DeviceName.parse(device)
        if name.vf_index is not None:
            raise SysfsError(f"{device} is a VF; remove its PF or lower sriov_numvfs", errno=errno.EINVAL)
        with self._locked():
            dev_dir = self._device_dir(device)
            pf = self._pf(name)
            for vf_index in range(int(self._read(dev_dir / "sriov_numvfs"))):
                tree.remove_class_device(self.root, f"{pf.name}v{vf_index}")
            tree.remove_class_device(self.root, device)
            shutil.rmtree(tree.pci_dir_of(self.root, pf))
