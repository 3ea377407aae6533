"""The device's passphrase engine through sysfs; VFs use their PF's engine."""

from __future__ import annotations

import pytest

from mockaccel_conformance.target import Target


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
