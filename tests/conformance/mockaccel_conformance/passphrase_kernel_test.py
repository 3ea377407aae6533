"""The two passphrase sources side by side (kernel only: the ioctl is the driver's).

``MOCK_ACCEL_IOC_PASSPHRASE`` draws from the driver's firmware wordlist; the
``passphrase_generate`` attribute runs the device's engine, which draws from
the device's own list (docs/abi.md §2.4, §5.5). The shared suite checks the
device side on both targets (passphrase_test.py); this checks the driver side.
"""

from __future__ import annotations

import os

from mockaccel_conformance.chardev import passphrase
from mockaccel_conformance.target import GuestTarget
from mockaccel_conformance.wordlists import as_firmware, synthetic_words


def test_ioctl_uses_the_driver_firmware_and_sysfs_the_device_list(kernel: GuestTarget) -> None:
    pf = kernel.node.pfs[2].name
    device_list = kernel.wordlist()
    firmware = synthetic_words()
    kernel.corrupt_firmware(as_firmware(firmware))
    try:
        kernel.write(pf, "load_wordlist", "1")
        fd = os.open(f"/dev/{pf}", os.O_RDONLY)
        try:
            # The request layout (word count, flags, reserved fields) is the chardev test's.
            from_ioctl = passphrase(fd, 8).split("-")
        finally:
            os.close(fd)
        assert len(from_ioctl) == 8
        assert set(from_ioctl) <= set(firmware), "the ioctl draws from the firmware the driver loaded"
        kernel.write(pf, "passphrase_generate", "1")
        assert set(kernel.read(pf, "passphrase").split()) <= device_list
    finally:
        kernel.restore_firmware()
        kernel.write(pf, "load_wordlist", "1")
