"""BAR0 reads served in C from the register image, and everything that must still reach Python.

The C read path (adapters/_vfu_build.py) serves a read only when the access
rule of docs/abi.md §2 clearly allows it and defers every other access to the
Python handler, which applies ``Device.check_read``, logs and refuses. The first
test holds the two to one rule over every offset and width; the others drive
the real server with a raw vfio-user client.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mockaccel_common import regmap as rm
from mockaccel_common.provisioned import cache_root, require
from mockaccel_common.regmap import Status
from mockaccel_testing.vfio_server import TEST_UUID, RunningServer, vfio_server
from mockaccel_testing.vfio_user_client import BAR0, VfioUserClient, VfioUserError
from mockaccel_vfio_server.adapters.libvfio_user import load_binding
from mockaccel_vfio_server.domain.device import Device, Identity
from mockaccel_vfio_server.errors import GuestError

OFF = {r.name: r.offset for r in rm.REGISTERS}
MEMORY = (16 << 30) + 0x1234_5000


def model() -> Device:
    return Device(Identity(uuid.UUID(TEST_UUID), MEMORY, 2, rm.DEFAULT_VF_MEMORY), None)


def allowed(device: Device, offset: int, width: int) -> bool:
    try:
        device.check_read(offset, width)
    except GuestError:
        return False
    return True


def test_the_binding_compiles_where_warnings_are_errors(tmp_path: Path) -> None:
    """A cold cache compiles in whichever process needs the binding first, a test run included.

    cffi compiles through distutils, whose import warns; under pytest's
    ``filterwarnings = error`` that warning failed the first test to compile.
    """
    target = tmp_path / "cffi" / "binding.so"
    path = os.pathsep.join(os.path.abspath(entry) for entry in sys.path)  # the sandbox's entries are relative
    script = "import sys; from pathlib import Path; from mockaccel_vfio_server.adapters._vfu_build import _compile; "
    script += "_compile(Path(sys.argv[1]), Path(sys.argv[2]))"
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", script, str(require("MOCKACCEL_LIBVFIO_USER_PREFIX")), str(target)],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert target.is_file()


def test_the_c_read_rule_is_the_device_rule() -> None:
    binding = load_binding(require("MOCKACCEL_LIBVFIO_USER_PREFIX"), cache_root() / "cffi")
    ffi, lib = binding.ffi, binding.lib
    device = model()
    image = device.register_image
    pinned = ffi.from_buffer("unsigned char[]", image)
    region = ffi.new("struct mockaccel_image *", {"bytes": pinned, "size": len(image), "serve_reads": True})
    out = ffi.new("char[16]")
    served = 0
    for offset in range(-16, rm.BAR0_SIZE + 16):
        for width in range(17):
            got = lib.mockaccel_image_read(region, out, width, offset)
            if allowed(device, offset, width):
                assert got == width, (offset, width)
                assert ffi.buffer(out, width)[:] == image[offset : offset + width], (offset, width)
                served += 1
            else:
                assert got == -1, (offset, width)
    assert region.reads == served
    region.serve_reads = False  # a read fault is injected: every read goes to Python
    assert lib.mockaccel_image_read(region, out, 4, 0) == -1
    assert region.reads == served


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with vfio_server(["-m", str(MEMORY), "--total-vfs", "2"]) as running:
        yield running


def counters(server: RunningServer) -> tuple[int, int, int]:
    """(reads in C, reads in Python, writes) so far."""
    state = server.control("state")["state"]
    in_c = state["guest_reads_from_image"]
    return in_c, state["guest_reads"] - in_c, state["guest_writes"]


@pytest.mark.parametrize("width", [1, 2, 4, 8], ids=["byte", "word", "dword", "qword"])
def test_reads_of_every_width_are_served_from_the_image(server: RunningServer, width: int) -> None:
    device = model()
    offsets = range(0, rm.BAR0_SIZE, 0x40 if width < 8 else 0x38)
    aligned = [o - o % width for o in offsets]
    before = counters(server)
    with VfioUserClient(server.socket) as client:
        for offset in aligned:
            assert client.read_int(BAR0, offset, width) == device.read(offset, width), hex(offset)
    in_c, in_python, writes = counters(server)
    assert (in_c - before[0], in_python - before[1], writes - before[2]) == (len(aligned), 0, 0)


@pytest.mark.parametrize(
    ("offset", "width", "reason"),
    [
        (0x02, 4, "misaligned read"),
        (0x01, 2, "misaligned read"),
        (0x00, 3, "read width must be one of (1, 2, 4, 8)"),
        (0x00, 16, "read width must be one of (1, 2, 4, 8)"),
    ],
    ids=["dword-misaligned", "word-misaligned", "odd-width", "wide"],
)
def test_refused_reads_reach_python_and_fail_as_before(
    server: RunningServer, offset: int, width: int, reason: str
) -> None:
    before = counters(server)
    with VfioUserClient(server.socket) as client:
        with pytest.raises(VfioUserError) as failure:
            client.read(BAR0, offset, width)
        assert failure.value.errno == errno.EINVAL
        assert client.read_int(BAR0, OFF["ID"], 4) == rm.DEVICE_MAGIC  # the server lives on
    event = server.process.wait_until(
        lambda e: e.get("event") == "guest_error" and e.get("offset") == offset and e.get("width") == width
    )
    assert event is not None
    assert (event["reason"], event["is_write"]) == (reason, False)
    in_c, in_python, _ = counters(server)
    assert (in_c - before[0], in_python - before[1]) == (1, 1)


@pytest.mark.parametrize(("offset", "width"), [(rm.BAR0_SIZE - 4, 8), (rm.BAR0_SIZE, 4)], ids=["straddles", "beyond"])
def test_reads_outside_bar0_are_refused_before_either_path(server: RunningServer, offset: int, width: int) -> None:
    """libvfio-user refuses them itself (EINVAL), as it did before the C path existed."""
    before = counters(server)
    with VfioUserClient(server.socket) as client:
        with pytest.raises(VfioUserError) as failure:
            client.read(BAR0, offset, width)
        assert failure.value.errno == errno.EINVAL
    assert counters(server) == before


def test_a_write_goes_to_python_and_the_image_follows_it(server: RunningServer) -> None:
    before = counters(server)
    with VfioUserClient(server.socket) as client:
        client.write_int(BAR0, OFF["STATUS"], Status.ALLOCATED)
        assert client.read_int(BAR0, OFF["STATUS"], 4) == Status.READY | Status.ALLOCATED
        client.write_int(BAR0, OFF["SRIOV_NUM_VFS"], 2)
        assert client.read_int(BAR0, OFF["SRIOV_NUM_VFS"], 4) == 2
        assert client.read_int(BAR0, rm.vf_status_offset(1), 4) == Status.READY
        client.write_int(BAR0, OFF["DEVICE_CONTROL"], rm.DeviceControl.RESET)
        assert client.read_int(BAR0, OFF["STATUS"], 4) == Status.READY
        assert client.read_int(BAR0, OFF["SRIOV_NUM_VFS"], 4) == 0
    in_c, in_python, writes = counters(server)
    assert (in_c - before[0], in_python - before[1], writes - before[2]) == (5, 0, 3)


def test_a_refused_write_is_logged_by_python(server: RunningServer) -> None:
    with VfioUserClient(server.socket) as client:
        with pytest.raises(VfioUserError) as failure:
            client.write_int(BAR0, OFF["ID"], 1)
        assert failure.value.errno == errno.EINVAL
    event = server.process.wait_until(
        lambda e: e.get("event") == "guest_error" and e.get("offset") == OFF["ID"] and e.get("is_write") is True
    )
    assert event is not None
    assert event["reason"] == "write to a read-only or reserved register"


def test_read_faults_send_reads_through_python_until_they_end(server: RunningServer) -> None:
    with VfioUserClient(server.socket) as client:
        server.control("fault", kind="fail_reads", enabled=True)
        before = counters(server)
        with pytest.raises(VfioUserError) as failure:
            client.read_int(BAR0, OFF["ID"], 4)
        assert failure.value.errno == errno.EINVAL
        server.control("fault", kind="fail_reads", enabled=False)
        server.control("fault", kind="slow", delay_ms=1)
        assert client.read_int(BAR0, OFF["ID"], 4) == rm.DEVICE_MAGIC
        in_c, in_python, _ = counters(server)
        assert (in_c - before[0], in_python - before[1]) == (0, 2)
        server.control("fault", kind="slow", enabled=False)
        assert client.read_int(BAR0, OFF["ID"], 4) == rm.DEVICE_MAGIC
        assert counters(server)[0] - in_c == 1


def test_a_control_api_change_is_visible_to_the_next_read(server: RunningServer) -> None:
    with VfioUserClient(server.socket) as client:
        server.control("health", function="pf", healthy=False)
        assert client.read_int(BAR0, OFF["STATUS"], 4) & Status.UNHEALTHY
        assert client.read_int(BAR0, OFF["IRQ_STATUS"], 4) & rm.IrqCause.HEALTH
        server.control("health", function="pf", healthy=True)
        assert client.read_int(BAR0, OFF["STATUS"], 4) == Status.READY
