from __future__ import annotations

import pytest

from mockaccel_vfio_server.sizes import format_size, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [("16G", 16 << 30), ("16Gi", 16 << 30), ("2048M", 2 << 30), ("4096", 4096), ("1k", 1024), ("1Ti", 1 << 40)],
)
def test_valid_sizes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "0", "0G", "16X", "16GB", "1.5G", "-1", "+1", "1_000", "G", "16 G", "99999999999999999999", "16777216T"],
)
def test_invalid_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


@pytest.mark.parametrize(("value", "text"), [(16 << 30, "16Gi"), (4097, "4097"), (3 << 20, "3Mi")])
def test_format_size_round_trips(value: int, text: str) -> None:
    assert format_size(value) == text
    assert parse_size(text) == value
