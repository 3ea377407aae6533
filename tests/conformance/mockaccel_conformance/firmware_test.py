"""The firmware wordlist: loaded once at start, reloadable, and a missing file reported as ENOENT."""

from __future__ import annotations

import errno

import pytest

from mockaccel_common import regmap
from mockaccel_conformance.target import Target


def test_wordlist_is_loaded_without_being_asked(target: Target) -> None:
    pf = target.node.pfs[0].name
    target.eventually(
        lambda: target.read(pf, "wordlist_loaded") == "1\n",
        "wordlist_loaded becomes 1",
        timeout=20 if target.is_kernel else 0.5,
    )
    for name in target.devices():
        assert target.read(name, "wordlist_words") == f"{regmap.WORDLIST_WORDS}\n"


def test_reload_and_missing_firmware(target: Target) -> None:
    pf = target.node.pfs[1].name
    target.write(pf, "load_wordlist", "1")
    assert target.read(pf, "wordlist_loaded") == "1\n"
    assert target.read(pf, "wordlist_words") == f"{regmap.WORDLIST_WORDS}\n"
    target.hide_firmware()
    try:
        assert target.write_errno(pf, "load_wordlist", "1") == errno.ENOENT
        assert target.read(pf, "wordlist_loaded") == "0\n"
        assert target.read(pf, "wordlist_words") == "0\n"
    finally:
        target.restore_firmware()
    target.write(pf, "load_wordlist", "1")
    assert target.read(pf, "wordlist_loaded") == "1\n"


@pytest.mark.parametrize(
    "text", ["too few words\n", "word\n" * (regmap.WORDLIST_WORDS + 1)], ids=["few", "many"]
)
def test_malformed_firmware_is_einval(target: Target, text: str) -> None:
    """A wordlist that exists but is not 7776 words: EINVAL (the driver's parse), not ENOENT."""
    pf = target.node.pfs[1].name
    target.corrupt_firmware(text)
    try:
        assert target.write_errno(pf, "load_wordlist", "1") == errno.EINVAL
        assert target.read(pf, "wordlist_loaded") == "0\n"
    finally:
        target.restore_firmware()
    target.write(pf, "load_wordlist", "1")
    assert target.read(pf, "wordlist_loaded") == "1\n"


def test_one_wordlist_shared_by_every_function(target: Target) -> None:
    first, second = target.node.pfs[0].name, target.node.pfs[1].name
    target.write(second, "sriov_numvfs", "1")
    target.hide_firmware()
    try:
        target.write_errno(second, "load_wordlist", "1")
        assert target.read(first, "wordlist_loaded") == "0\n", "a failed reload on one PF unloads the shared list"
    finally:
        target.restore_firmware()
    target.write(f"{second}v0", "load_wordlist", "1")
    for name in (first, second, f"{second}v0"):
        assert target.read(name, "wordlist_words") == f"{regmap.WORDLIST_WORDS}\n"
