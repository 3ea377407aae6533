"""Names, modes and formats of the mock-accel sysfs ABI, and the kernel's write rules.

This module is the executable form of the sysfs section of docs/abi.md. The
simulator renders attributes with the ``format_*`` functions; the reader
parses them with the ``parse_*`` functions; ``parse_*_write`` reproduce how
the driver (kstrtou32/kstrtou16 and its checks) accepts or rejects a write,
with the same errno.
"""

from __future__ import annotations

import errno
import re
import uuid
from dataclasses import dataclass

from mockaccel_common.errors import SysfsError
from mockaccel_common.regmap import STATUS_WRITABLE, Capability, Status

CLASS_NAME = "mock-accel"
CLASS_DIR = f"class/{CLASS_NAME}"
SIM_MARKER = ".mockaccel-sim"


@dataclass(frozen=True)
class Attribute:
    name: str
    mode: int
    pf: bool = True
    vf: bool = True


ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("uuid", 0o444),
    Attribute("memory_size", 0o444),
    Attribute("capabilities", 0o444),
    Attribute("status", 0o644),
    Attribute("health", 0o444),
    Attribute("numa_node", 0o444),
    Attribute("pci_address", 0o444),
    Attribute("device_type", 0o444),
    Attribute("fw_version", 0o444),
    Attribute("vf_index", 0o444, pf=False),
    Attribute("sriov_totalvfs", 0o444, vf=False),
    Attribute("sriov_numvfs", 0o644, vf=False),
    Attribute("wordlist_loaded", 0o444),
    Attribute("wordlist_words", 0o444),
    Attribute("load_wordlist", 0o200),
    Attribute("passphrase_length", 0o644),
    Attribute("passphrase_generate", 0o200),
    Attribute("passphrase_status", 0o444),
    Attribute("passphrase_count", 0o444),
    Attribute("passphrase", 0o444),
)
PCI_DEVICE_ATTRIBUTES = ("vendor", "device", "class", "numa_node", "sriov_totalvfs", "sriov_numvfs")
PASSPHRASE_STATES = ("idle", "busy", "ready", "error")


def attributes_for(kind_is_vf: bool) -> tuple[Attribute, ...]:
    return tuple(a for a in ATTRIBUTES if (a.vf if kind_is_vf else a.pf))


# --- formats (each ends with a newline, as sysfs_emit output does) ----------


def format_uuid(value: uuid.UUID) -> str:
    return f"{value}\n"


def format_u64(value: int) -> str:
    return f"{value}\n"


def format_hex32(value: int) -> str:
    return f"0x{value & 0xFFFFFFFF:08x}\n"


def format_int(value: int) -> str:
    return f"{value}\n"


def format_health(status: Status) -> str:
    return "unhealthy\n" if Status.UNHEALTHY in status else "healthy\n"


# --- parsers for reads -------------------------------------------------------

_DECIMAL_RE = re.compile(r"^(0|[1-9][0-9]*)$")
_SIGNED_RE = re.compile(r"^-?(0|[1-9][0-9]*)$")
_HEX32_RE = re.compile(r"^0x[0-9a-f]{8}$")
_VERSION_RE = re.compile(r"^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$")


def _strip(text: str, what: str) -> str:
    if not text.endswith("\n"):
        raise ValueError(f"{what}: missing trailing newline (partial write?): {text!r}")
    return text[:-1]


def parse_uuid(text: str) -> uuid.UUID:
    body = _strip(text, "uuid")
    parsed = uuid.UUID(body)
    if str(parsed) != body:
        raise ValueError(f"uuid: not in canonical lower-case form: {body!r}")
    return parsed


def parse_u64(text: str, what: str = "value") -> int:
    body = _strip(text, what)
    if not _DECIMAL_RE.match(body) or int(body) >= 1 << 64:
        raise ValueError(f"{what}: not an unsigned 64-bit decimal: {body!r}")
    return int(body)


def parse_signed(text: str, what: str = "value") -> int:
    body = _strip(text, what)
    if not _SIGNED_RE.match(body):
        raise ValueError(f"{what}: not a decimal integer: {body!r}")
    return int(body)


def parse_hex32(text: str, what: str = "value") -> int:
    body = _strip(text, what)
    if not _HEX32_RE.match(body):
        raise ValueError(f"{what}: not 0x followed by 8 hex digits: {body!r}")
    return int(body, 16)


def parse_capabilities(text: str) -> Capability:
    return Capability(parse_hex32(text, "capabilities"))


def parse_status(text: str) -> Status:
    return Status(parse_hex32(text, "status"))


def parse_version(text: str) -> str:
    body = _strip(text, "fw_version")
    if not _VERSION_RE.match(body):
        raise ValueError(f"fw_version: not major.minor.patch: {body!r}")
    return body


# --- the kernel's write rules -----------------------------------------------

# The kernel's grammar (lib/kstrtox.c): an optional '+', base-0 digits, at most one
# trailing newline. \Z, not $: Python's $ also matches before a final newline, which
# made "1\n\n" valid here while the kernel refuses it.
_KSTRTOUL_RE = re.compile(r"\A\+?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\n?\Z")


def kstrtoul(text: str, limit: int, path: str = "") -> int:
    """Parse like the kernel's kstrtoul(base 0): one number, one optional newline."""
    if not _KSTRTOUL_RE.match(text):
        raise SysfsError(f"invalid number {text!r}", path=path, errno=errno.EINVAL)
    body = text.removesuffix("\n").removeprefix("+")
    if body.lower().startswith("0x"):
        value = int(body, 16)
    elif len(body) > 1 and body.startswith("0"):
        value = int(body, 8)
    else:
        value = int(body)
    if value > limit:
        raise SysfsError(f"number out of range {text!r}", path=path, errno=errno.ERANGE)
    return value


def parse_status_write(text: str, path: str = "") -> Status:
    """A write to ``status`` sets the writable bits: ``0`` frees, ``1`` allocates."""
    value = kstrtoul(text, 0xFFFFFFFF, path)
    if value & ~int(STATUS_WRITABLE):
        raise SysfsError(f"only the ALLOCATED bit is writable, got {text!r}", path=path, errno=errno.EINVAL)
    return Status(value)


def parse_numvfs_write(text: str, *, current: int, total: int, path: str = "") -> int:
    """``sriov_numvfs`` rules of the PCI core: same value is a no-op, change only via 0."""
    value = kstrtoul(text, 0xFFFF, path)
    if value > total:
        raise SysfsError(f"{value} VFs requested, TotalVFs is {total}", path=path, errno=errno.ERANGE)
    if value not in (0, current) and current != 0:
        raise SysfsError(
            f"{current} VFs already enabled; disable them before enabling {value}", path=path, errno=errno.EBUSY
        )
    return value


def parse_passphrase_length_write(text: str, path: str = "") -> int:
    from mockaccel_common.regmap import PASSPHRASE_MAX_WORDS, PASSPHRASE_MIN_WORDS

    value = kstrtoul(text, 0xFFFFFFFF, path)
    if not PASSPHRASE_MIN_WORDS <= value <= PASSPHRASE_MAX_WORDS:
        raise SysfsError(
            f"passphrase length {value} outside {PASSPHRASE_MIN_WORDS}..{PASSPHRASE_MAX_WORDS}",
            path=path,
            errno=errno.EINVAL,
        )
    return value


def parse_trigger_write(text: str, path: str = "") -> None:
    """Trigger attributes (``passphrase_generate``, ``load_wordlist``) accept only ``1``."""
    if kstrtoul(text, 0xFFFFFFFF, path) != 1:
        raise SysfsError(f"write 1 to trigger, got {text!r}", path=path, errno=errno.EINVAL)
