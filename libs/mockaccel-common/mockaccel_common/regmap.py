"""The BAR0 register map and the /dev/mockN ioctl ABI, defined once.

Every other place derives from this module: the vfio-server decodes guest
accesses with it, the simulator and the sysfs model use its bit definitions,
and the kernel module includes ``mockaccel_regs.h``, which
``mockaccel_common.regmap_header`` generates from it (a test fails when the
committed header and this module disagree). docs/abi.md explains each register.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass

PCI_VENDOR_ID = 0x1DE5
PCI_DEVICE_ID_PF = 0x0001
PCI_DEVICE_ID_VF = 0x0002
PCI_SUBSYSTEM_VENDOR_ID = 0x1DE5
PCI_SUBSYSTEM_ID = 0x0001
# Base class 0x12 "Processing accelerators", subclass 0x00, prog-if 0x00.
PCI_CLASS_CODE = 0x120000
PCI_REVISION_ID = 0x01

BAR0_SIZE = 0x1000
DEVICE_MAGIC = 0x4B434F4D  # the bytes "MOCK" read as a little-endian u32
ABI_REVISION = 0x00020000  # major 2, minor 0, patch 0 (the original was 1.0.0)
FW_VERSION = 0x00010200  # 1.2.0

MAX_VFS = 7  # PF at function 0 and its VFs at functions 1..7 of one slot (no ARI)
PASSPHRASE_MIN_WORDS = 4
PASSPHRASE_MAX_WORDS = 12
PASSPHRASE_DEFAULT_WORDS = 6
PASSPHRASE_BUFFER_SIZE = 256
WORDLIST_WORDS = 7776

DEFAULT_PF_MEMORY = 16 << 30
DEFAULT_VF_MEMORY = 2 << 30


class Access(enum.Enum):
    """How the guest may access a register."""

    RO = "RO"  # writes are guest errors
    RW = "RW"
    WO = "WO"  # reads return 0
    RW1C = "RW1C"  # write 1 to clear a bit


@dataclass(frozen=True)
class Register:
    """One BAR0 register: offset and width in bytes, access, reset value."""

    name: str
    offset: int
    width: int
    access: Access
    reset: int | None
    doc: str

    @property
    def end(self) -> int:
        return self.offset + self.width


class Capability(enum.IntFlag):
    """CAPABILITIES register bits."""

    COMPUTE = 1 << 0
    PASSPHRASE = 1 << 1
    SRIOV = 1 << 2
    HEALTH_IRQ = 1 << 3


class Status(enum.IntFlag):
    """STATUS register bits (and each VF's VF_STATUS).

    The original device used one value, 1, for both "ready" and "allocated",
    so every device looked allocated at boot. Here they are distinct bits.
    """

    ALLOCATED = 1 << 0  # the only bit the guest may write
    READY = 1 << 1
    UNHEALTHY = 1 << 2


STATUS_WRITABLE = Status.ALLOCATED


class IrqCause(enum.IntFlag):
    """IRQ_STATUS / IRQ_ENABLE bits."""

    HEALTH = 1 << 0  # the UNHEALTHY bit of the PF or of a VF changed


class PassphraseCommand(enum.IntEnum):
    GENERATE = 1


class PassphraseState(enum.IntEnum):
    IDLE = 0
    BUSY = 1
    READY = 2
    ERROR = 3


class DeviceControl(enum.IntFlag):
    RESET = 1 << 0


# Per-VF register block: VF m occupies SRIOV_VF_BLOCK + m * SRIOV_VF_STRIDE.
SRIOV_VF_BLOCK = 0x440
SRIOV_VF_STRIDE = 0x20
VF_STATUS = 0x00
VF_UUID = 0x08

REGISTERS: tuple[Register, ...] = (
    Register("ID", 0x000, 4, Access.RO, DEVICE_MAGIC, 'Magic "MOCK".'),
    Register("REVISION", 0x004, 4, Access.RO, ABI_REVISION, "ABI revision, major.minor.patch in bits 23:16.15:8.7:0."),
    Register("UUID", 0x008, 16, Access.RO, None, "RFC 4122 UUID, byte 0 of the canonical form at the lowest offset."),
    Register("MEMORY_SIZE_LO", 0x020, 4, Access.RO, None, "Device memory in bytes, bits 31:0."),
    Register("MEMORY_SIZE_HI", 0x024, 4, Access.RO, None, "Device memory in bytes, bits 63:32."),
    Register("CAPABILITIES", 0x028, 4, Access.RO, None, "Capability bits."),
    Register("STATUS", 0x02C, 4, Access.RW, int(Status.READY), "Status bits; only ALLOCATED is writable."),
    Register("FW_VERSION", 0x030, 4, Access.RO, FW_VERSION, "Firmware version, bits 23:16.15:8.7:0."),
    Register("IRQ_STATUS", 0x034, 4, Access.RW1C, 0, "Pending interrupt causes; write 1 to clear."),
    Register("IRQ_ENABLE", 0x038, 4, Access.RW, 0, "Interrupt causes that raise INTx."),
    Register("DEVICE_CONTROL", 0x03C, 4, Access.WO, None, "Write RESET to reset the function."),
    Register("PASSPHRASE_CMD", 0x100, 4, Access.WO, None, "Write GENERATE to produce a passphrase."),
    Register("PASSPHRASE_LENGTH", 0x104, 4, Access.RW, PASSPHRASE_DEFAULT_WORDS, "Words per passphrase, 4..12."),
    Register("PASSPHRASE_STATUS", 0x108, 4, Access.RO, int(PassphraseState.IDLE), "Passphrase engine state."),
    Register("PASSPHRASE_COUNT", 0x10C, 4, Access.RO, 0, "Words in the last passphrase."),
    Register("PASSPHRASE_BUFFER", 0x200, PASSPHRASE_BUFFER_SIZE, Access.RO, 0, "NUL-terminated words."),
    Register("SRIOV_TOTAL_VFS", 0x400, 4, Access.RO, None, "VFs this PF can enable (0..7)."),
    Register("SRIOV_NUM_VFS", 0x404, 4, Access.RW, 0, "Enabled VFs; 0..TOTAL_VFS, changes only from or to 0."),
    Register("SRIOV_VF_MEMORY_LO", 0x408, 4, Access.RO, None, "Memory of each VF in bytes, bits 31:0."),
    Register("SRIOV_VF_MEMORY_HI", 0x40C, 4, Access.RO, None, "Memory of each VF in bytes, bits 63:32."),
    Register("SRIOV_VF_OFFSET", 0x410, 4, Access.RO, 1, "Function number of VF 0 relative to the PF."),
    Register("SRIOV_VF_STRIDE", 0x414, 4, Access.RO, 1, "Function number distance between VFs."),
    Register("SRIOV_VF_DEVICE_ID", 0x418, 4, Access.RO, PCI_DEVICE_ID_VF, "PCI device ID the VFs report."),
    Register("SRIOV_VF_BLOCK", SRIOV_VF_BLOCK, SRIOV_VF_STRIDE * MAX_VFS, Access.RW, None,
             "Per-VF blocks: VF_STATUS (+0x00, RW like STATUS) and VF_UUID (+0x08, 16 bytes RO)."),
)

REGISTERS_BY_NAME: dict[str, Register] = {r.name: r for r in REGISTERS}


def register(name: str) -> Register:
    return REGISTERS_BY_NAME[name]


def vf_status_offset(vf_index: int) -> int:
    return SRIOV_VF_BLOCK + vf_index * SRIOV_VF_STRIDE + VF_STATUS


def vf_uuid_offset(vf_index: int) -> int:
    return SRIOV_VF_BLOCK + vf_index * SRIOV_VF_STRIDE + VF_UUID


# --- /dev/mockN ioctl ABI (Linux asm-generic _IOC encoding) -----------------

IOCTL_MAGIC = ord("M")
_IOC_WRITE = 1
_IOC_READ = 2
# struct mock_accel_passphrase: u8 word_count, u8 reserved0[3], u32 flags, u64 reserved[2], char[256]
PASSPHRASE_IOCTL_SIZE = 1 + 3 + 4 + 16 + PASSPHRASE_BUFFER_SIZE
PASSPHRASE_FLAGS_KNOWN = 0  # no flag is defined yet: any set bit is EINVAL
INFO_IOCTL_SIZE = 40  # struct mock_accel_info, see the header


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (IOCTL_MAGIC << 8) | nr


IOC_STATUS = _ioc(_IOC_READ, 1, 4)
IOC_PASSPHRASE = _ioc(_IOC_READ | _IOC_WRITE, 2, PASSPHRASE_IOCTL_SIZE)
IOC_INFO = _ioc(_IOC_READ, 3, INFO_IOCTL_SIZE)

FIRMWARE_WORDLIST = "mock-accel-wordlist.txt"


def _check_layout() -> None:
    ordered = sorted(REGISTERS, key=lambda r: r.offset)
    for before, after in itertools.pairwise(ordered):
        if before.end > after.offset:
            raise AssertionError(f"{before.name} overlaps {after.name}")
    if ordered[-1].end > BAR0_SIZE:
        raise AssertionError("register map exceeds BAR0")


_check_layout()
