from __future__ import annotations

import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mockaccel_common.errors import SysfsError
from mockaccel_common.sysfs import abi


@given(st.integers(0, 0xFFFFFFFF))
def test_kstrtoul_accepts_decimal_hex_and_octal(value: int) -> None:
    for text in (f"{value}", f"{value}\n", f"0x{value:x}", f"0{value:o}" if value else "0"):
        assert abi.kstrtoul(text, 0xFFFFFFFF) == value


@given(st.text(alphabet="0123456789abcdefxX \n+-", max_size=12))
def test_kstrtoul_never_raises_anything_but_sysfs_errors(text: str) -> None:
    errors: list[int | None] = []
    try:
        abi.kstrtoul(text, 0xFFFF)
    except SysfsError as exc:
        errors.append(exc.errno)
    assert set(errors) <= {errno.EINVAL, errno.ERANGE}


@given(st.integers(0, 0xFFFFFFFF))
def test_hex32_format_round_trips(value: int) -> None:
    assert abi.parse_hex32(abi.format_hex32(value)) == value


@pytest.mark.parametrize(
    ("text", "current", "total", "code"),
    [("8", 0, 7, errno.ERANGE), ("2", 3, 7, errno.EBUSY), ("x", 0, 7, errno.EINVAL)],
)
def test_numvfs_rules(text: str, current: int, total: int, code: int) -> None:
    with pytest.raises(SysfsError) as caught:
        abi.parse_numvfs_write(text, current=current, total=total)
    assert caught.value.errno == code
