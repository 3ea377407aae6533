"""The device's passphrase engine through sysfs; VFs use their PF's engine; its words are the device's."""

from __future__ import annotations

import errno

import pytest

from mockaccel_common import regmap
from mockaccel_conformance.target import Target
from mockaccel_conformance.wordlists import as_firmware, synthetic_words


@pytest.mark.parametrize("length", [4, 8, 12])
def test_generate(target: Target, length: int) -> None:
    pf = target.node.pfs[0].name
    target.write(pf, "load_wordlist", "1")
    target.write(pf, "passphrase_length", str(length))
    assert target.read(pf, "passphrase_length") == f"{length}\n"
    target.write(pf, "passphrase_generate", "1")
    assert target.read(pf, "passphrase_status") == "ready\n"
    assert target.read(pf, "passphrase_count") == f"{length}\n"
    phrase = target.read(pf, "passphrase")
    assert phrase.endswith("\n")
    words = phrase[:-1].split(" ")
    assert len(words) == length
    assert set(words) <= target.wordlist()


def test_vf_uses_the_pf_engine(target: Target) -> None:
    pf = target.node.pfs[1].name
    target.write(pf, "sriov_numvfs", "1")
    target.write(f"{pf}v0", "passphrase_length", "5")
    assert target.read(pf, "passphrase_length") == "5\n"
    target.write(f"{pf}v0", "passphrase_generate", "1")
    assert target.read(f"{pf}v0", "passphrase") == target.read(pf, "passphrase")


def _generated_words(target: Target, device: str) -> set[str]:
    target.write(device, "passphrase_generate", "1")
    assert target.read(device, "passphrase_status") == "ready\n"
    return set(target.read(device, "passphrase").split())


def test_the_device_draws_from_its_own_list_not_the_driver_firmware(target: Target) -> None:
    """The engine is the device's (the vfio-server's wordlist); the firmware is the driver's.

    Both targets start with the two lists from one provisioned file; replacing the
    firmware with other words changes what the driver loads and nothing the device draws.
    """
    pf = target.node.pfs[0].name
    device_list = target.wordlist()
    other = synthetic_words()
    assert not device_list & set(other)
    target.corrupt_firmware(as_firmware(other))
    try:
        target.write(pf, "load_wordlist", "1")
        assert target.read(pf, "wordlist_words") == f"{regmap.WORDLIST_WORDS}\n"
        words = _generated_words(target, pf)
        assert words <= device_list, f"words not from the device's list: {words - device_list}"
    finally:
        target.restore_firmware()
        target.write(pf, "load_wordlist", "1")


def test_generate_works_without_the_driver_firmware(target: Target) -> None:
    pf = target.node.pfs[0].name
    device_list = target.wordlist()
    target.hide_firmware()
    try:
        assert target.write_errno(pf, "load_wordlist", "1") == errno.ENOENT
        assert target.read(pf, "wordlist_loaded") == "0\n"
        assert _generated_words(target, pf) <= device_list
    finally:
        target.restore_firmware()
        target.write(pf, "load_wordlist", "1")
