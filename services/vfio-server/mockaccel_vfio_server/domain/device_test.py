from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mockaccel_common import regmap as rm
from mockaccel_common.model import vf_uuid
from mockaccel_common.passphrase import Wordlist
from mockaccel_common.regmap import Capability, IrqCause, PassphraseState, Status
from mockaccel_vfio_server.domain.device import Device, Identity
from mockaccel_vfio_server.errors import GuestError

PF_UUID = uuid.UUID("12345678-9abc-4def-8123-456789abcdef")
OFF = {r.name: r.offset for r in rm.REGISTERS}


def synthetic_wordlist() -> Wordlist:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ("".join(t) for t in itertools.product(letters, repeat=3))
    return Wordlist(tuple(itertools.islice(words, rm.WORDLIST_WORDS)), "synthetic")


WORDLIST = synthetic_wordlist()


def make(total_vfs: int = 4, memory: int = 16 << 30, wordlist: Wordlist | None = WORDLIST) -> Device:
    return Device(Identity(PF_UUID, memory, total_vfs, 2 << 30), wordlist)


def counter_bits() -> Iterator[int]:
    return itertools.count()


def test_reset_values_match_the_register_map() -> None:
    device = make()
    for register in rm.REGISTERS:
        if register.reset is not None and register.width <= 8 and register.access is not rm.Access.WO:
            assert device.read(register.offset, 4) == register.reset, register.name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ID", 0x4B434F4D),
        ("REVISION", 0x00020000),
        ("MEMORY_SIZE_LO", 0),
        ("MEMORY_SIZE_HI", 4),
        ("CAPABILITIES", int(Capability.COMPUTE | Capability.PASSPHRASE | Capability.SRIOV | Capability.HEALTH_IRQ)),
        ("STATUS", int(Status.READY)),
        ("FW_VERSION", 0x00010200),
        ("SRIOV_TOTAL_VFS", 4),
        ("SRIOV_VF_MEMORY_LO", 0x80000000),
        ("SRIOV_VF_MEMORY_HI", 0),
        ("SRIOV_VF_DEVICE_ID", 2),
        ("PASSPHRASE_LENGTH", 6),
    ],
    ids=lambda v: str(v),
)
def test_identity_registers(name: str, expected: int) -> None:
    assert make().read(OFF[name], 4) == expected


def test_uuid_bytes_are_the_canonical_big_endian_form() -> None:
    device = make()
    assert bytes(device.read(OFF["UUID"] + i, 1) for i in range(16)) == PF_UUID.bytes
    assert device.read(OFF["UUID"], 8).to_bytes(8, "little") == PF_UUID.bytes[:8]


def test_64_bit_read_of_memory_size() -> None:
    assert make(memory=(16 << 30) + 5).read(OFF["MEMORY_SIZE_LO"], 8) == (16 << 30) + 5


def test_capabilities_without_wordlist_and_vfs() -> None:
    caps = make(total_vfs=0, wordlist=None).read(OFF["CAPABILITIES"], 4)
    assert caps == Capability.COMPUTE | Capability.HEALTH_IRQ


@pytest.mark.parametrize(
    ("offset", "width"),
    [(0x1000, 4), (0xFFC, 8), (0x2, 4), (0x21, 2), (0x0, 3), (0x0, 16), (-4, 4)],
    ids=["past-end", "straddles-end", "misaligned-4", "misaligned-2", "width-3", "width-16", "negative"],
)
def test_invalid_reads_are_guest_errors(offset: int, width: int) -> None:
    with pytest.raises(GuestError):
        make().read(offset, width)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, Status.READY | Status.ALLOCATED), (0, Status.READY)],
    ids=["allocate", "free"],
)
def test_status_only_allocated_is_writable(value: int, expected: Status) -> None:
    device = make()
    device.write(OFF["STATUS"], 4, value)
    assert device.read(OFF["STATUS"], 4) == expected


@pytest.mark.parametrize("value", [2, 4, 3, 0xFFFFFFFF], ids=hex)
def test_status_other_bits_are_guest_errors(value: int) -> None:
    device = make()
    with pytest.raises(GuestError):
        device.write(OFF["STATUS"], 4, value)
    assert device.read(OFF["STATUS"], 4) == Status.READY


@pytest.mark.parametrize(
    ("offset", "width"),
    [(OFF["STATUS"], 2), (OFF["STATUS"], 8), (OFF["STATUS"] + 1, 4), (OFF["ID"], 4), (0x800, 4), (0x1000, 4)],
    ids=["narrow", "wide", "misaligned", "read-only", "reserved", "past-end"],
)
def test_invalid_writes_are_guest_errors(offset: int, width: int) -> None:
    with pytest.raises(GuestError):
        make().write(offset, width, 1)


def test_health_sets_unhealthy_and_irq_cause_and_irq_line_follows_enable() -> None:
    device = make()
    assert device.set_health(None, healthy=False)
    assert device.read(OFF["STATUS"], 4) == Status.READY | Status.UNHEALTHY
    assert device.read(OFF["IRQ_STATUS"], 4) == IrqCause.HEALTH
    assert not device.irq_line
    device.write(OFF["IRQ_ENABLE"], 4, IrqCause.HEALTH)
    assert device.irq_line
    device.write(OFF["IRQ_STATUS"], 4, IrqCause.HEALTH)  # RW1C
    assert device.read(OFF["IRQ_STATUS"], 4) == 0
    assert not device.irq_line
    assert not device.set_health(None, healthy=False)  # no change, no new cause
    assert device.read(OFF["IRQ_STATUS"], 4) == 0


def test_allocated_faulty_pf_reads_7() -> None:
    device = make()
    device.write(OFF["STATUS"], 4, 1)
    device.set_health(None, healthy=False)
    assert device.read(OFF["STATUS"], 4) == 7


def test_reset_keeps_health_and_identity_clears_driver_state() -> None:
    device = make()
    device.write(OFF["STATUS"], 4, 1)
    device.write(OFF["IRQ_ENABLE"], 4, 1)
    device.write(OFF["PASSPHRASE_LENGTH"], 4, 9)
    device.write(OFF["SRIOV_NUM_VFS"], 4, 2)
    device.write(rm.vf_status_offset(1), 4, 1)
    device.set_health(None, healthy=False)
    device.write(OFF["DEVICE_CONTROL"], 4, rm.DeviceControl.RESET)
    assert device.read(OFF["STATUS"], 4) == Status.READY | Status.UNHEALTHY
    for name in ("IRQ_STATUS", "IRQ_ENABLE", "PASSPHRASE_STATUS", "PASSPHRASE_COUNT", "SRIOV_NUM_VFS"):
        assert device.read(OFF[name], 4) == 0, name
    assert device.read(OFF["PASSPHRASE_LENGTH"], 4) == 6
    assert device.read(rm.vf_status_offset(1), 4) == 0
    assert device.read(OFF["MEMORY_SIZE_HI"], 4) == 4


def test_passphrase_generation_is_uniform_words_space_separated() -> None:
    device = Device(Identity(PF_UUID, 1 << 30, 0, 1 << 30), WORDLIST, randbits=lambda bits: 7)
    device.write(OFF["PASSPHRASE_LENGTH"], 4, 4)
    device.write(OFF["PASSPHRASE_CMD"], 4, 1)
    assert device.read(OFF["PASSPHRASE_STATUS"], 4) == PassphraseState.READY
    assert device.read(OFF["PASSPHRASE_COUNT"], 4) == 4
    text = bytes(device.read(OFF["PASSPHRASE_BUFFER"] + i, 1) for i in range(rm.PASSPHRASE_BUFFER_SIZE))
    assert text.rstrip(b"\0").decode() == " ".join([WORDLIST.words[7]] * 4)


def test_passphrase_without_wordlist_is_an_error_state() -> None:
    device = make(wordlist=None)
    device.write(OFF["PASSPHRASE_CMD"], 4, 1)
    assert device.read(OFF["PASSPHRASE_STATUS"], 4) == PassphraseState.ERROR


@pytest.mark.parametrize(
    ("name", "value"), [("PASSPHRASE_LENGTH", 3), ("PASSPHRASE_LENGTH", 13), ("PASSPHRASE_CMD", 2)]
)
def test_passphrase_bad_values_are_guest_errors(name: str, value: int) -> None:
    device = make()
    with pytest.raises(GuestError):
        device.write(OFF[name], 4, value)
    assert device.read(OFF["PASSPHRASE_LENGTH"], 4) == 6


def test_sriov_enable_rules_and_vf_state() -> None:
    device = make(total_vfs=4)
    assert device.read(rm.vf_status_offset(0), 4) == 0
    with pytest.raises(GuestError):
        device.write(rm.vf_status_offset(0), 4, 1)  # disabled VF
    with pytest.raises(GuestError):
        device.write(OFF["SRIOV_NUM_VFS"], 4, 5)  # > total
    device.write(OFF["SRIOV_NUM_VFS"], 4, 2)
    device.write(OFF["SRIOV_NUM_VFS"], 4, 2)  # same value: no-op
    with pytest.raises(GuestError):
        device.write(OFF["SRIOV_NUM_VFS"], 4, 3)  # non-zero to non-zero
    assert device.read(OFF["SRIOV_NUM_VFS"], 4) == 2
    assert device.read(rm.vf_status_offset(1), 4) == Status.READY
    assert device.read(rm.vf_status_offset(2), 4) == 0
    device.write(rm.vf_status_offset(1), 4, 1)
    assert device.read(rm.vf_status_offset(1), 4) == Status.READY | Status.ALLOCATED
    device.write(OFF["SRIOV_NUM_VFS"], 4, 0)
    assert device.read(rm.vf_status_offset(1), 4) == 0


def test_vf_uuids_come_from_the_model() -> None:
    device = make(total_vfs=7)
    for m in range(7):
        at = rm.vf_uuid_offset(m)
        assert bytes(device.read(at + i, 1) for i in range(16)) == vf_uuid(PF_UUID, m).bytes


def test_vf_health_raises_irq_only_while_enabled() -> None:
    device = make(total_vfs=2)
    device.set_health(0, healthy=False)
    assert device.read(OFF["IRQ_STATUS"], 4) == 0
    device.write(OFF["SRIOV_NUM_VFS"], 4, 2)
    assert device.read(rm.vf_status_offset(0), 4) == Status.READY | Status.UNHEALTHY
    device.set_health(1, healthy=False)
    assert device.read(OFF["IRQ_STATUS"], 4) == IrqCause.HEALTH
    with pytest.raises(ValueError, match="no VF 2"):
        device.set_health(2, healthy=False)


# -- properties of the decoder ------------------------------------------------

offsets = st.integers(min_value=-8, max_value=rm.BAR0_SIZE + 8)
widths = st.sampled_from([0, 1, 2, 3, 4, 5, 8, 16])
values = st.integers(min_value=-1, max_value=(1 << 33))


@given(offset=offsets, width=widths, value=values, is_write=st.booleans())
def test_any_access_raises_nothing_but_guest_error(offset: int, width: int, value: int, is_write: bool) -> None:
    device = make()
    try:
        if is_write:
            device.write(offset, width, value)
        else:
            buf = memoryview(bytearray(max(width, 0)))
            device.read_into(offset, buf)
    except GuestError:
        pass


@given(size=st.integers(min_value=1, max_value=(1 << 64) - 1))
def test_memory_size_halves_compose(size: int) -> None:
    device = make(memory=size)
    lo, hi = device.read(OFF["MEMORY_SIZE_LO"], 4), device.read(OFF["MEMORY_SIZE_HI"], 4)
    assert lo | hi << 32 == size == device.read(OFF["MEMORY_SIZE_LO"], 8)


READ_ONLY = [r.offset for r in rm.REGISTERS if r.access is rm.Access.RO]


@given(offset=st.sampled_from([*READ_ONLY, 0x800, 0x0FFC]), value=st.integers(0, 0xFFFFFFFF))
def test_writes_to_read_only_registers_never_change_the_image(offset: int, value: int) -> None:
    device = make()
    before = [device.read(o, 8) for o in range(0, rm.BAR0_SIZE, 8)]
    with pytest.raises(GuestError):
        device.write(offset, 4, value)
    assert [device.read(o, 8) for o in range(0, rm.BAR0_SIZE, 8)] == before


def test_register_image_is_a_live_read_only_view_of_what_reads_return() -> None:
    device = make()
    image = device.register_image
    assert image.readonly
    assert image.nbytes == rm.BAR0_SIZE
    with pytest.raises(TypeError):
        image[0] = 0
    buffer = image.obj  # the bytearray behind it: rewritten in place, never replaced
    device.write(OFF["STATUS"], 4, int(Status.ALLOCATED))
    device.write(OFF["PASSPHRASE_CMD"], 4, int(rm.PassphraseCommand.GENERATE))
    device.set_health(None, healthy=False)
    assert device.register_image.obj is buffer
    for offset in range(0, rm.BAR0_SIZE, 8):
        assert int.from_bytes(image[offset : offset + 8], "little") == device.read(offset, 8), hex(offset)
    assert int.from_bytes(image[OFF["STATUS"] : OFF["STATUS"] + 4], "little") == (
        Status.READY | Status.ALLOCATED | Status.UNHEALTHY
    )
    device.reset()
    assert int.from_bytes(image[OFF["PASSPHRASE_COUNT"] : OFF["PASSPHRASE_COUNT"] + 4], "little") == 0
