from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mockaccel_common.quantity import MAX_BYTES, QuantityError, canonical_bytes, canonicalise, parse_quantity


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("16Gi", 16 << 30),
        ("16G", 16 * 10**9),
        ("2048Mi", 2 << 30),
        ("4096", 4096),
        ("1k", 1000),
        ("1Ki", 1024),
        ("1Ti", 1 << 40),
        ("15Ei", 15 << 60),
    ],
    ids=["Gi", "G-is-decimal", "Mi", "bytes", "k", "Ki", "Ti", "Ei"],
)
def test_sizes_follow_the_kubernetes_grammar(text: str, expected: int) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        *("", "0", "0Gi", "16X", "16GB", "1.5Gi", "-1", "+1", "1_000", "Gi"),
        *("16 Gi", " 16Gi", "16Gi\n", "1e9", "16K", "16Ei"),
    ],
)
def test_anything_else_is_refused_with_a_message(text: str) -> None:
    with pytest.raises(QuantityError, match="size"):
        parse_quantity(text)


@given(st.integers(min_value=1, max_value=MAX_BYTES))
def test_canonical_form_parses_back_to_the_same_bytes(value: int) -> None:
    assert parse_quantity(canonical_bytes(value)) == value


@given(st.integers(min_value=1, max_value=MAX_BYTES))
def test_canonicalise_is_idempotent(value: int) -> None:
    text = canonical_bytes(value)
    assert canonicalise(text) == text
    assert parse_quantity(canonicalise(str(value))) == value
