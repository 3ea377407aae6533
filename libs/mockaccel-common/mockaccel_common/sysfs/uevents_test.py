"""Kernel uevents: parsing, and the listener on a real netlink socket in a private network namespace.

The listener test sends a uevent to the KOBJECT_UEVENT group as the kernel
would. It runs in a child process in its own network namespace (``unshare
--net``, root), so nothing else on the machine receives the made-up events.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mockaccel_common.sysfs.uevents import parse_uevent

KERNEL_ADD = (
    b"add@/devices/pci0000:00/0000:00:04.1/mock-accel/mock0v1\0ACTION=add\0"
    b"DEVPATH=/devices/pci0000:00/0000:00:04.1/mock-accel/mock0v1\0SUBSYSTEM=mock-accel\0SEQNUM=4711\0"
)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (KERNEL_ADD, ("add", "/devices/pci0000:00/0000:00:04.1/mock-accel/mock0v1", "mock-accel")),
        (
            b"remove@/devices/virtual/net/lo\0ACTION=remove\0SUBSYSTEM=net\0",
            ("remove", "/devices/virtual/net/lo", "net"),
        ),
        (b"libudev\0\xfe\xed\xca\xfe", None),
        (b"", None),
        (b"\xff@\xff\0=\0==\0", ("\ufffd", "\ufffd", "")),
    ],
    ids=["kernel-add", "other-subsystem", "libudev", "empty", "garbage"],
)
def test_parse(data: bytes, expected: tuple[str, str, str] | None) -> None:
    event = parse_uevent(data)
    got = None if event is None else (event.action, event.devpath, event.subsystem)
    assert got == expected


_TEXT = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="@="), min_size=1)
_NAME = st.from_regex(r"mock[0-9]{1,3}(v[0-9]{1,3})?", fullmatch=True)


@given(action=_TEXT, parents=st.lists(_TEXT.filter(lambda t: "/" not in t), max_size=4), device=_NAME)
def test_a_kernel_message_names_its_device(action: str, parents: list[str], device: str) -> None:
    devpath = "/" + "/".join([*parents, "mock-accel", device])
    data = f"{action}@{devpath}\0ACTION={action}\0DEVPATH={devpath}\0SUBSYSTEM=mock-accel\0".encode()
    event = parse_uevent(data)
    assert event is not None
    assert (event.action, event.devpath, event.subsystem, event.device) == (action, devpath, "mock-accel", device)


@given(st.binary(max_size=512))
def test_any_bytes_parse_or_are_ignored(data: bytes) -> None:
    event = parse_uevent(data)  # never raises
    assert event is None or isinstance(event.device, str)


CHILD = textwrap.dedent(
    """
    import asyncio, socket, sys
    from mockaccel_common.sysfs.uevents import KERNEL_GROUP, NETLINK_KOBJECT_UEVENT, UeventListener

    async def main():
        seen = []
        got = asyncio.Event()
        def on_event(reason, devices):
            seen.append(reason + ":" + "+".join(sorted(devices)))
            got.set()
        listener = UeventListener(on_event)
        listener.start()
        sender = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_KOBJECT_UEVENT)
        sender.bind((0, 0))
        for message in sys.argv[1:]:
            sender.sendto(bytes.fromhex(message), (0, KERNEL_GROUP))
        await asyncio.wait_for(got.wait(), 5)
        await asyncio.sleep(0.2)  # let the other (ignored) messages arrive too
        listener.close()
        print(",".join(seen))

    asyncio.run(main())
    """
)


def test_the_listener_requests_a_pass_for_our_subsystem_only() -> None:
    unshare = shutil.which("unshare")
    assert unshare is not None, "util-linux unshare is required (apt-get install util-linux)"
    if os.geteuid() != 0:
        pytest.fail("this test needs root for a private network namespace")
    other = b"add@/devices/virtual/net/x\0ACTION=add\0SUBSYSTEM=net\0"
    result = subprocess.run(
        [unshare, "--net", sys.executable, "-c", CHILD, other.hex(), KERNEL_ADD.hex()],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "uevent_add:mock0v1"  # the event names the one device to re-read
