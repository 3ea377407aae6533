"""Our own vfio-user client (written from the protocol spec) against the real server."""

from __future__ import annotations

import concurrent.futures
import errno
import os
import select
import struct
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from mockaccel_common import regmap as rm
from mockaccel_common.passphrase import Wordlist
from mockaccel_common.provisioned import require
from mockaccel_common.regmap import Status
from mockaccel_testing.vfio_server import TEST_UUID, RunningServer, vfio_server
from mockaccel_testing.vfio_user_client import BAR0, CONFIG, INTX, MSI, VfioUserClient, VfioUserError
from mockaccel_vfio_server.domain.device import Device, Identity

MEMORY = (16 << 30) + 0x1234_5000  # both halves non-trivial
OFF = {r.name: r.offset for r in rm.REGISTERS}


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with vfio_server(["-m", str(MEMORY), "--total-vfs", "3"]) as running:
        yield running


def test_negotiation_and_device_info(server: RunningServer) -> None:
    with VfioUserClient(server.socket) as client:
        assert client.server_version is not None
        assert client.server_version[0] == 0
        info = client.device_info()
        assert info.num_regions >= 9
        bar0 = client.region_info(BAR0)
        assert (bar0.size, bar0.flags & 0x3) == (rm.BAR0_SIZE, 0x3)  # readable and writable
        assert client.region_info(CONFIG).size == 4096  # PCI Express config space


def test_config_space_identity(server: RunningServer) -> None:
    with VfioUserClient(server.socket) as client:
        cfg = client.read(CONFIG, 0, 256)
    vendor, device, _, status, revision = struct.unpack_from("<HHHHB", cfg)
    assert (vendor, device, revision) == (rm.PCI_VENDOR_ID, rm.PCI_DEVICE_ID_PF, rm.PCI_REVISION_ID)
    assert int.from_bytes(cfg[0x09:0x0C], "little") == rm.PCI_CLASS_CODE
    assert struct.unpack_from("<HH", cfg, 0x2C) == (rm.PCI_SUBSYSTEM_VENDOR_ID, rm.PCI_SUBSYSTEM_ID)
    assert cfg[0x10] & 0x7 == 0  # BAR0: memory space, 32-bit, not prefetchable
    assert cfg[0x3D] == 1  # interrupt pin INTA#
    assert status & 0x10  # capability list present
    cap = cfg[0x34]
    assert cfg[cap] == 0x10  # PCI Express capability
    assert cfg[cap + 2] & 0xF0 == 0  # device/port type: endpoint


def test_every_register_reads_as_the_device_model_says(server: RunningServer) -> None:
    identity = Identity(uuid.UUID(TEST_UUID), MEMORY, 3, rm.DEFAULT_VF_MEMORY)
    model = Device(identity, Wordlist.parse(require("MOCKACCEL_WORDLIST").read_bytes(), "wordlist"))
    with VfioUserClient(server.socket) as client:
        for offset in range(0, rm.BAR0_SIZE, 4):
            assert client.read_int(BAR0, offset, 4) == model.read(offset, 4), hex(offset)
        assert client.read_int(BAR0, OFF["ID"], 4) == rm.DEVICE_MAGIC
        assert client.read_int(BAR0, OFF["REVISION"], 4) == rm.ABI_REVISION
        uuid_bytes = client.read(BAR0, OFF["UUID"], 8) + client.read(BAR0, OFF["UUID"] + 8, 8)
        assert uuid_bytes == uuid.UUID(TEST_UUID).bytes
        assert client.read_int(BAR0, OFF["MEMORY_SIZE_LO"], 8) == MEMORY
        assert client.read_int(BAR0, OFF["MEMORY_SIZE_HI"], 4) == MEMORY >> 32
        assert client.read_int(BAR0, OFF["MEMORY_SIZE_LO"] + 1, 1) == (MEMORY >> 8) & 0xFF


def test_status_write_reaches_the_device(server: RunningServer) -> None:
    with VfioUserClient(server.socket) as client:
        client.write_int(BAR0, OFF["STATUS"], 1)
        assert client.read_int(BAR0, OFF["STATUS"], 4) == Status.READY | Status.ALLOCATED
        state = server.control("state")["state"]
        assert state["status"] == Status.READY | Status.ALLOCATED
        client.write_int(BAR0, OFF["STATUS"], 0)


@pytest.mark.parametrize(
    ("kind", "offset", "width", "value"),
    [
        ("read", 0x22, 4, None),
        ("read", 0x0, 3, None),
        ("write", OFF["STATUS"], 4, 4),
        ("write", OFF["ID"], 4, 1),
        ("write", OFF["STATUS"], 2, 1),
        ("write", OFF["PASSPHRASE_LENGTH"], 4, 13),
    ],
    ids=["misaligned-read", "odd-width-read", "status-bad-bit", "read-only", "narrow-write", "bad-length"],
)
def test_guest_errors_fail_with_einval_and_the_server_lives_on(
    server: RunningServer, kind: str, offset: int, width: int, value: int | None
) -> None:
    with VfioUserClient(server.socket) as client:
        access = (
            (lambda: client.read(BAR0, offset, width))
            if kind == "read"
            else (lambda: client.write_int(BAR0, offset, value or 0, width))
        )
        with pytest.raises(VfioUserError) as failure:
            access()
        assert failure.value.errno == errno.EINVAL
        assert client.read_int(BAR0, 0, 4) == rm.DEVICE_MAGIC
    event = server.process.wait_for_event("guest_error")
    assert {"offset", "width", "value", "reason"} <= set(event)


def test_passphrase_engine(server: RunningServer) -> None:
    words = set(Wordlist.parse(require("MOCKACCEL_WORDLIST").read_bytes(), "wordlist").words)
    with VfioUserClient(server.socket) as client:
        client.write_int(BAR0, OFF["PASSPHRASE_LENGTH"], 5)
        client.write_int(BAR0, OFF["PASSPHRASE_CMD"], 1)
        assert client.read_int(BAR0, OFF["PASSPHRASE_STATUS"], 4) == rm.PassphraseState.READY
        assert client.read_int(BAR0, OFF["PASSPHRASE_COUNT"], 4) == 5
        buffer = b"".join(
            client.read(BAR0, OFF["PASSPHRASE_BUFFER"] + i, 8) for i in range(0, rm.PASSPHRASE_BUFFER_SIZE, 8)
        )
        with pytest.raises(VfioUserError):  # the buffer is read in 1..8-byte accesses like any register
            client.read(BAR0, OFF["PASSPHRASE_BUFFER"], 16)
    text = buffer.split(b"\0")[0].decode()
    assert len(text.split(" ")) == 5, text
    assert set(text.split(" ")) <= words


def test_faults_and_health_are_visible_to_the_client(server: RunningServer) -> None:
    with VfioUserClient(server.socket) as client:
        server.control("health", function="pf", healthy=False)
        assert client.read_int(BAR0, OFF["STATUS"], 4) & Status.UNHEALTHY
        server.control("fault", kind="fail_reads", enabled=True)
        with pytest.raises(VfioUserError) as failure:
            client.read_int(BAR0, 0, 4)
        assert failure.value.errno == errno.EINVAL
        server.control("fault", kind="fail_reads", enabled=False)
        server.control("health", function="pf", healthy=True)
        assert client.read_int(BAR0, OFF["STATUS"], 4) == Status.READY


def test_reconnect_twice(server: RunningServer) -> None:
    for _ in range(3):
        with VfioUserClient(server.socket) as client:
            assert client.read_int(BAR0, 0, 4) == rm.DEVICE_MAGIC
            client.write_int(BAR0, OFF["STATUS"], 1)
        # A client that leaves resets the device (LOST_CONN): the next one starts fresh.
    with VfioUserClient(server.socket) as client:
        assert client.read_int(BAR0, OFF["STATUS"], 4) == Status.READY
    assert server.control("state")["state"]["clients_served"] >= 4


def test_device_reset_command(server: RunningServer) -> None:
    with VfioUserClient(server.socket) as client:
        client.write_int(BAR0, OFF["STATUS"], 1)
        client.reset()
        assert client.read_int(BAR0, OFF["STATUS"], 4) == Status.READY


def interrupts(efd: int, wait: float) -> int:
    """How many times the eventfd was signalled within ``wait`` seconds (0 if not)."""
    ready, _, _ = select.select([efd], [], [], wait)
    return int.from_bytes(os.read(efd, 8), "little") if ready else 0


def test_health_change_raises_intx_when_enabled(server: RunningServer) -> None:
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    try:
        with VfioUserClient(server.socket) as client:
            client.set_irq_eventfds(INTX, [efd])
            server.control("health", function="pf", healthy=False)  # IRQ_ENABLE is 0: no interrupt
            assert interrupts(efd, 0.3) == 0
            assert client.read_int(BAR0, OFF["IRQ_STATUS"], 4) == rm.IrqCause.HEALTH
            client.write_int(BAR0, OFF["IRQ_ENABLE"], rm.IrqCause.HEALTH)  # pending and now enabled: INTx
            assert interrupts(efd, 5) == 1
            client.write_int(BAR0, OFF["IRQ_STATUS"], rm.IrqCause.HEALTH)  # the driver acknowledges
            server.control("health", function="pf", healthy=True)  # another change: another interrupt
            assert interrupts(efd, 5) == 1
            assert client.read_int(BAR0, OFF["STATUS"], 4) == Status.READY
            client.write_int(BAR0, OFF["IRQ_STATUS"], rm.IrqCause.HEALTH)
    finally:
        os.close(efd)
    server.process.wait_for_event("irq_triggered")


def test_unmasked_intx_fires_again_while_the_cause_is_pending(server: RunningServer) -> None:
    """Level-triggered INTx: a handler that could not clear the cause (a failed read) gets another interrupt."""
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    try:
        with VfioUserClient(server.socket) as client:
            client.set_irq_eventfds(INTX, [efd])
            client.write_int(BAR0, OFF["IRQ_ENABLE"], rm.IrqCause.HEALTH)
            server.control("health", function="pf", healthy=False)
            assert interrupts(efd, 5) == 1
            client.mask_irq(INTX, masked=False)  # QEMU's end of interrupt; the cause is still pending
            assert interrupts(efd, 5) == 1
            client.write_int(BAR0, OFF["IRQ_STATUS"], rm.IrqCause.HEALTH)
            client.mask_irq(INTX, masked=False)  # cleared now: no interrupt
            assert interrupts(efd, 0.3) == 0
            client.mask_irq(INTX)  # masked: a new cause waits for the unmask
            server.control("health", function="pf", healthy=True)
            assert interrupts(efd, 0.3) == 0
            client.mask_irq(INTX, masked=False)
            assert interrupts(efd, 5) == 1
    finally:
        os.close(efd)


def test_control_api_changes_interleave_with_a_stream_of_guest_accesses(server: RunningServer) -> None:
    """The control API (event loop) and the guest's accesses (serving thread) share the device under one lock.

    A guest thread reads and acknowledges without pause while the control API
    flips the PF's health: every access succeeds with a value the device can
    hold, the interrupts the changes raise reach the client, nobody deadlocks
    and the client is never ended.
    """
    ended_before = server.control("state")["state"]["clients_ended"]
    triggered_before = server.control("state")["state"]["irqs_triggered"]
    server.control("health", function="pf", healthy=True)
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    stop = threading.Event()
    try:
        with VfioUserClient(server.socket) as client, concurrent.futures.ThreadPoolExecutor(1) as pool:
            client.set_irq_eventfds(INTX, [efd])
            client.write_int(BAR0, OFF["IRQ_STATUS"], rm.IrqCause.HEALTH)  # start with nothing pending
            client.write_int(BAR0, OFF["IRQ_ENABLE"], rm.IrqCause.HEALTH)

            def guest() -> int:
                accesses = 0
                while not stop.is_set():
                    assert client.read_int(BAR0, 0, 4) == rm.DEVICE_MAGIC
                    assert client.read_int(BAR0, OFF["IRQ_STATUS"], 4) in (0, rm.IrqCause.HEALTH)
                    client.write_int(BAR0, OFF["IRQ_STATUS"], rm.IrqCause.HEALTH)  # acknowledge
                    accesses += 3
                return accesses

            accesses = pool.submit(guest)
            for flip in range(60):
                server.control("health", function="pf", healthy=flip % 2 == 1)
            stop.set()
            assert accesses.result(timeout=30) > 0
            assert interrupts(efd, 5) >= 1  # the first flip found nothing pending: a rising edge at least
            assert client.read_int(BAR0, 0, 4) == rm.DEVICE_MAGIC
    finally:
        stop.set()
        os.close(efd)
    state = server.control("state")["state"]
    assert state["clients_ended"] == ended_before
    assert state["irqs_triggered"] > triggered_before


def _msi_offset(client: VfioUserClient) -> int:
    """Walk the capability list from the header's pointer to the MSI capability (ID 5)."""
    at = client.read_int(CONFIG, 0x34, 1)
    seen = []
    while at:
        cap_id, nxt = client.read(CONFIG, at, 2)
        seen.append(cap_id)
        if cap_id == 0x05:
            return at
        at = nxt
    raise AssertionError(f"no MSI capability in the list: {seen}")


def test_msi_capability_delivers_health_interrupts(server: RunningServer) -> None:
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    try:
        with VfioUserClient(server.socket) as client:
            msi = _msi_offset(client)
            control = client.read_int(CONFIG, msi + 2, 2)
            assert control & 0x80, f"want a 64-bit address: {control:#x}"
            assert not control & 0x0E, f"want one vector: {control:#x}"
            client.write_int(CONFIG, msi + 4, 0xFEE0_0000)  # what the guest's MSI setup writes
            client.write_int(CONFIG, msi + 12, 0x4041, 2)
            client.write_int(CONFIG, msi + 2, control | 1, 2)
            assert client.read_int(CONFIG, msi + 4, 4) == 0xFEE0_0000
            assert client.read_int(CONFIG, msi + 2, 2) == control | 1
            client.write_int(CONFIG, msi, 0x1234, 2)  # ID and next pointer are read-only: ignored
            assert client.read_int(CONFIG, msi, 1) == 0x05
            with pytest.raises(VfioUserError):
                client.write_int(CONFIG, 0x100, 1)  # outside every capability: refused, as before MSI
            assert server.control("state")["state"]["msi_enabled"]
            client.set_irq_eventfds(MSI, [efd])
            client.write_int(BAR0, OFF["IRQ_ENABLE"], rm.IrqCause.HEALTH)
            server.control("health", function="pf", healthy=False)
            assert interrupts(efd, 5) == 1
            client.write_int(BAR0, OFF["IRQ_STATUS"], rm.IrqCause.HEALTH)
            server.control("health", function="pf", healthy=True)
            assert interrupts(efd, 5) == 1
            client.write_int(BAR0, OFF["IRQ_STATUS"], rm.IrqCause.HEALTH)
    finally:
        os.close(efd)


def test_slow_fault_delays_guest_accesses(server: RunningServer) -> None:
    with VfioUserClient(server.socket) as client:
        server.control("fault", kind="slow", delay_ms=300)
        started = time.monotonic()
        assert client.read_int(BAR0, 0, 4) == rm.DEVICE_MAGIC
        slow = time.monotonic() - started
        server.control("fault", kind="slow", enabled=False)
        started = time.monotonic()
        client.read_int(BAR0, 0, 4)
        fast = time.monotonic() - started
    assert slow >= 0.3
    assert fast < 0.3


def test_a_slow_fault_longer_than_the_io_timeout_keeps_the_client_and_the_control_api(server: RunningServer) -> None:
    """The injected delay is the device's, not the client's: the guest waits, nobody is dropped or stalled.

    The fixture's server has the default I/O timeout (1 s); the delay is longer.
    The control API answers while an access sleeps (the serving thread sleeps,
    not the event loop), and the client is still served after two slow accesses.
    """
    ended_before = server.control("state")["state"]["clients_ended"]
    with VfioUserClient(server.socket) as client, concurrent.futures.ThreadPoolExecutor(1) as pool:
        server.control("fault", kind="slow", delay_ms=1500)
        try:
            first = pool.submit(client.read_int, BAR0, 0, 4)
            time.sleep(0.2)  # the request is on its way, or already sleeping in the server
            server.control("state")
            answered_while_slow = not first.done()
            assert first.result(timeout=10) == rm.DEVICE_MAGIC
            assert client.read_int(BAR0, 0, 4) == rm.DEVICE_MAGIC  # the same client, a second slow access
        finally:
            server.control("fault", kind="slow", enabled=False)
        assert client.read_int(BAR0, 0, 4) == rm.DEVICE_MAGIC
    assert answered_while_slow
    assert server.control("state")["state"]["clients_ended"] == ended_before


def test_fail_writes_fault_drops_guest_writes(server: RunningServer) -> None:
    with VfioUserClient(server.socket) as client:
        server.control("fault", kind="fail_writes", enabled=True)
        with pytest.raises(VfioUserError) as failure:
            client.write_int(BAR0, OFF["STATUS"], 1)
        server.control("fault", kind="fail_writes", enabled=False)
        assert failure.value.errno == errno.EINVAL
        assert client.read_int(BAR0, OFF["STATUS"], 4) == Status.READY
