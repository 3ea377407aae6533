"""The BAR0 register file of one mock-accel PF and its VFs (docs/abi.md §2-4), as pure logic.

Why a live byte image: guest reads are the hot path (one per vfio-user
message), and the access rules say a read of 1, 2, 4 or 8 naturally aligned
bytes anywhere returns the bytes of the register image. So the device keeps a
4 KiB ``bytearray`` that is re-rendered whenever state changes (rare), and a
read is a slice copy. Reads have no side effects (no register is computed or
cleared on read), which is what lets the vfio-user adapter serve them straight
from ``register_image`` without calling in here. Writes are decoded through a table built from
``mockaccel_common.regmap``: offsets are never re-declared here.

Everything a guest can do wrong raises ``GuestError``; nothing else escapes
``read``/``write`` for any input (a property test checks that). No I/O, no
cffi, no asyncio: the adapter calls in, then asks ``irq_line`` whether INTx
should be raised.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mockaccel_common import regmap as rm
from mockaccel_common.model import vf_uuid
from mockaccel_common.passphrase import RandBits, Wordlist, choose_words
from mockaccel_common.regmap import Capability, DeviceControl, IrqCause, PassphraseState, Status
from mockaccel_vfio_server.errors import GuestError

READ_WIDTHS = (1, 2, 4, 8)
WRITE_WIDTH = 4
_U32 = struct.Struct("<I")
_OFF = {r.name: r.offset for r in rm.REGISTERS}


@dataclass(frozen=True)
class Identity:
    """What the device is; set at start-up, unchanged by resets."""

    uuid: uuid.UUID
    memory_size: int
    total_vfs: int
    vf_memory_size: int

    def __post_init__(self) -> None:
        if not 0 <= self.total_vfs <= rm.MAX_VFS:
            raise ValueError(f"total_vfs must be 0..{rm.MAX_VFS}, got {self.total_vfs}")
        for name in ("memory_size", "vf_memory_size"):
            if not 0 < getattr(self, name) < 1 << 64:
                raise ValueError(f"{name} must be 1..2**64-1, got {getattr(self, name)}")


class Device:
    """One PF's registers, passphrase engine, SR-IOV block and per-function health."""

    def __init__(self, identity: Identity, wordlist: Wordlist | None, randbits: RandBits | None = None) -> None:
        self.identity = identity
        self._wordlist = wordlist
        self._randbits = randbits
        self._image = bytearray(rm.BAR0_SIZE)  # rewritten in place, never resized (the view pins its size)
        self._view = memoryview(self._image)
        self._vf_uuids = tuple(vf_uuid(identity.uuid, m) for m in range(identity.total_vfs))
        # Health is a property of the hardware: it survives resets and VF disable.
        self._pf_unhealthy = False
        self._vf_unhealthy = [False] * identity.total_vfs
        self._writers = self._write_table()
        self._render_identity()
        self.reset()

    # -- what the guest sees -----------------------------------------------

    @property
    def capabilities(self) -> Capability:
        caps = Capability.COMPUTE | Capability.HEALTH_IRQ
        if self._wordlist is not None:
            caps |= Capability.PASSPHRASE
        if self.identity.total_vfs:
            caps |= Capability.SRIOV
        return caps

    @property
    def irq_line(self) -> bool:
        """Whether INTx is asserted: a pending cause that is enabled."""
        return bool(self._irq_status & self._irq_enable)

    @property
    def register_image(self) -> memoryview:
        """The live image guest reads return, read-only: same address and size for the device's life.

        Every state change re-renders it in place before the change returns.
        """
        return self._view.toreadonly()

    def check_read(self, offset: int, width: int) -> None:
        if width not in READ_WIDTHS:
            raise GuestError(f"read width must be one of {READ_WIDTHS}", offset=offset, width=width)
        if offset < 0 or offset + width > rm.BAR0_SIZE:
            raise GuestError("read outside BAR0", offset=offset, width=width)
        if offset % width:
            raise GuestError("misaligned read", offset=offset, width=width)

    def read_into(self, offset: int, buf: memoryview) -> None:
        """Fill ``buf`` (the guest's read of ``len(buf)`` bytes at ``offset``) from the image.

        A valid access costs one combined test and one copy out of a view of
        the image; ``check_read`` runs only to name what is wrong with an
        invalid one. (The vfio-user adapter serves valid guest reads from
        ``register_image`` itself, so this sees them only while a read fault is
        injected.)
        """
        width = len(buf)
        if width not in READ_WIDTHS or offset < 0 or offset + width > rm.BAR0_SIZE or offset % width:
            self.check_read(offset, width)
        buf[:] = self._view[offset : offset + width]

    def read(self, offset: int, width: int) -> int:
        self.check_read(offset, width)
        return int.from_bytes(self._image[offset : offset + width], "little")

    def write(self, offset: int, width: int, value: int) -> None:
        """Apply a guest write; raises GuestError and changes nothing if the device refuses it."""
        if width != WRITE_WIDTH:
            raise GuestError(f"writes must be {WRITE_WIDTH} bytes", offset=offset, width=width, value=value)
        if offset % WRITE_WIDTH or not 0 <= offset < rm.BAR0_SIZE:
            raise GuestError("misaligned or out-of-range write", offset=offset, width=width, value=value)
        if not 0 <= value <= 0xFFFFFFFF:
            raise GuestError("value does not fit in 32 bits", offset=offset, width=width, value=value)
        writer = self._writers.get(offset)
        if writer is None:
            raise GuestError("write to a read-only or reserved register", offset=offset, width=width, value=value)
        refusal = writer(value)
        if refusal:
            raise GuestError(refusal, offset=offset, width=width, value=value)
        self._render_state()

    # -- what the control API and the vfio-user reset do ---------------------

    def reset(self) -> None:
        """Function-level reset (§3.3): driver-visible state back to its reset values."""
        self._pf_allocated = False
        self._irq_status = 0
        self._irq_enable = 0
        self._pp_length = rm.PASSPHRASE_DEFAULT_WORDS
        self._pp_state = PassphraseState.IDLE
        self._pp_count = 0
        self._pp_buffer = b""
        self._num_vfs = 0
        self._vf_allocated = [False] * self.identity.total_vfs
        self._render_state()

    def set_health(self, vf_index: int | None, healthy: bool) -> bool:
        """Mark the PF (``None``) or VF ``vf_index`` (un)healthy; True if it changed.

        A change of the PF or of an enabled VF sets the HEALTH interrupt cause.
        """
        if vf_index is None:
            changed = self._pf_unhealthy == healthy
            self._pf_unhealthy = not healthy
            visible = True
        else:
            if not 0 <= vf_index < self.identity.total_vfs:
                raise ValueError(f"no VF {vf_index}: this PF has {self.identity.total_vfs} VFs")
            changed = self._vf_unhealthy[vf_index] == healthy
            self._vf_unhealthy[vf_index] = not healthy
            visible = vf_index < self._num_vfs
        if changed and visible:
            self._irq_status |= IrqCause.HEALTH
        self._render_state()
        return changed

    def pf_status(self) -> Status:
        status = Status.READY
        if self._pf_allocated:
            status |= Status.ALLOCATED
        if self._pf_unhealthy:
            status |= Status.UNHEALTHY
        return status

    def vf_status(self, vf_index: int) -> Status:
        if vf_index >= self._num_vfs:
            return Status(0)
        status = Status.READY
        if self._vf_allocated[vf_index]:
            status |= Status.ALLOCATED
        if self._vf_unhealthy[vf_index]:
            status |= Status.UNHEALTHY
        return status

    def vfs(self) -> list[dict[str, Any]]:
        """Every VF the PF can enable, for the control API."""
        return [
            {
                "index": m,
                "enabled": m < self._num_vfs,
                "uuid": str(self._vf_uuids[m]),
                "memory_size": self.identity.vf_memory_size,
                "status": int(self.vf_status(m)),
                "healthy": not self._vf_unhealthy[m],
                "function_offset": 1 + m,  # SRIOV_VF_OFFSET + m * SRIOV_VF_STRIDE
            }
            for m in range(self.identity.total_vfs)
        ]

    def snapshot(self) -> dict[str, Any]:
        """Registers and state for the control API's ``state`` (never the passphrase text)."""
        registers = {
            r.name: self.read(r.offset, r.width)
            for r in rm.REGISTERS
            if r.width in (4, 8) and r.name != "SRIOV_VF_BLOCK"
        }
        return {
            "uuid": str(self.identity.uuid),
            "memory_size": self.identity.memory_size,
            "capabilities": int(self.capabilities),
            "status": int(self.pf_status()),
            "healthy": not self._pf_unhealthy,
            "irq_line": self.irq_line,
            "wordlist_loaded": self._wordlist is not None,
            "registers": registers,
            "vfs": self.vfs(),
        }

    # -- write decoding ------------------------------------------------------

    def _write_table(self) -> dict[int, Callable[[int], str | None]]:
        """offset → handler returning None (accepted) or the reason for refusing."""
        table: dict[int, Callable[[int], str | None]] = {
            _OFF["STATUS"]: self._write_pf_status,
            _OFF["IRQ_STATUS"]: self._write_irq_status,
            _OFF["IRQ_ENABLE"]: self._write_irq_enable,
            _OFF["DEVICE_CONTROL"]: self._write_device_control,
            _OFF["PASSPHRASE_CMD"]: self._write_passphrase_cmd,
            _OFF["PASSPHRASE_LENGTH"]: self._write_passphrase_length,
            _OFF["SRIOV_NUM_VFS"]: self._write_num_vfs,
        }
        for m in range(rm.MAX_VFS):
            table[rm.vf_status_offset(m)] = self._vf_status_writer(m)
        for register in rm.REGISTERS:
            if register.access in (rm.Access.RW, rm.Access.WO, rm.Access.RW1C) and register.name != "SRIOV_VF_BLOCK":
                assert register.offset in table, f"no write decoder for {register.name}"
        return table

    def _write_pf_status(self, value: int) -> str | None:
        if value & ~rm.STATUS_WRITABLE:
            return "only STATUS.ALLOCATED is writable"
        self._pf_allocated = bool(value & Status.ALLOCATED)
        return None

    def _vf_status_writer(self, vf_index: int) -> Callable[[int], str | None]:
        def write(value: int) -> str | None:
            if vf_index >= self._num_vfs:
                return f"VF {vf_index} is not enabled"
            if value & ~rm.STATUS_WRITABLE:
                return "only VF STATUS.ALLOCATED is writable"
            self._vf_allocated[vf_index] = bool(value & Status.ALLOCATED)
            return None

        return write

    def _write_irq_status(self, value: int) -> str | None:
        self._irq_status &= ~value  # RW1C: reserved bits are ignored, as the driver writes back what it read
        return None

    def _write_irq_enable(self, value: int) -> str | None:
        if value & ~IrqCause.HEALTH:
            return "IRQ_ENABLE has only the HEALTH bit"
        self._irq_enable = value
        return None

    def _write_device_control(self, value: int) -> str | None:
        if value & ~DeviceControl.RESET:
            return "DEVICE_CONTROL has only the RESET bit"
        if value & DeviceControl.RESET:
            self.reset()
        return None

    def _write_passphrase_cmd(self, value: int) -> str | None:
        if value != rm.PassphraseCommand.GENERATE:
            return "PASSPHRASE_CMD accepts only GENERATE (1)"
        self._generate_passphrase()
        return None

    def _write_passphrase_length(self, value: int) -> str | None:
        if not rm.PASSPHRASE_MIN_WORDS <= value <= rm.PASSPHRASE_MAX_WORDS:
            return f"PASSPHRASE_LENGTH must be {rm.PASSPHRASE_MIN_WORDS}..{rm.PASSPHRASE_MAX_WORDS}"
        self._pp_length = value
        return None

    def _write_num_vfs(self, value: int) -> str | None:
        if value == self._num_vfs:
            return None
        if value > self.identity.total_vfs:
            return f"SRIOV_NUM_VFS must be 0..{self.identity.total_vfs}"
        if value and self._num_vfs:
            return "SRIOV_NUM_VFS changes only from or to 0"
        self._num_vfs = value
        self._vf_allocated = [False] * self.identity.total_vfs
        return None

    def _generate_passphrase(self) -> None:
        self._pp_buffer = b""
        self._pp_count = 0
        if self._wordlist is None:
            self._pp_state = PassphraseState.ERROR
            return
        self._pp_state = PassphraseState.BUSY  # never observable: generation is synchronous
        kwargs = {"randbits": self._randbits} if self._randbits else {}
        text = " ".join(choose_words(self._wordlist.words, self._pp_length, **kwargs)).encode("ascii")
        if len(text) >= rm.PASSPHRASE_BUFFER_SIZE:  # leave room for the NUL
            self._pp_state = PassphraseState.ERROR
            return
        self._pp_buffer = text
        self._pp_count = self._pp_length
        self._pp_state = PassphraseState.READY

    # -- image rendering -----------------------------------------------------

    def _put32(self, name_or_offset: str | int, value: int) -> None:
        offset = _OFF[name_or_offset] if isinstance(name_or_offset, str) else name_or_offset
        _U32.pack_into(self._image, offset, value & 0xFFFFFFFF)

    def _render_identity(self) -> None:
        ident = self.identity
        self._put32("ID", rm.DEVICE_MAGIC)
        self._put32("REVISION", rm.ABI_REVISION)
        uuid_at = _OFF["UUID"]
        self._image[uuid_at : uuid_at + 16] = ident.uuid.bytes
        self._put32("MEMORY_SIZE_LO", ident.memory_size)
        self._put32("MEMORY_SIZE_HI", ident.memory_size >> 32)
        self._put32("CAPABILITIES", self.capabilities)
        self._put32("FW_VERSION", rm.FW_VERSION)
        self._put32("SRIOV_TOTAL_VFS", ident.total_vfs)
        self._put32("SRIOV_VF_MEMORY_LO", ident.vf_memory_size)
        self._put32("SRIOV_VF_MEMORY_HI", ident.vf_memory_size >> 32)
        self._put32("SRIOV_VF_OFFSET", rm.REGISTERS_BY_NAME["SRIOV_VF_OFFSET"].reset or 0)
        self._put32("SRIOV_VF_STRIDE", rm.REGISTERS_BY_NAME["SRIOV_VF_STRIDE"].reset or 0)
        self._put32("SRIOV_VF_DEVICE_ID", rm.PCI_DEVICE_ID_VF)
        for m, vf in enumerate(self._vf_uuids):
            at = rm.vf_uuid_offset(m)
            self._image[at : at + 16] = vf.bytes

    def _render_state(self) -> None:
        self._put32("STATUS", self.pf_status())
        self._put32("IRQ_STATUS", self._irq_status)
        self._put32("IRQ_ENABLE", self._irq_enable)
        self._put32("PASSPHRASE_LENGTH", self._pp_length)
        self._put32("PASSPHRASE_STATUS", self._pp_state)
        self._put32("PASSPHRASE_COUNT", self._pp_count)
        buf_at = _OFF["PASSPHRASE_BUFFER"]
        size = rm.PASSPHRASE_BUFFER_SIZE
        self._image[buf_at : buf_at + size] = self._pp_buffer.ljust(size, b"\0")
        self._put32("SRIOV_NUM_VFS", self._num_vfs)
        for m in range(self.identity.total_vfs):
            self._put32(rm.vf_status_offset(m), self.vf_status(m))
