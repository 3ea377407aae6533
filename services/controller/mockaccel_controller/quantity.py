"""Kubernetes Quantity strings for whole numbers, in the API server's canonical form.

Why: the API server canonicalises every Quantity it stores (``17179869184`` is
stored as ``16Gi``, ``1000`` as ``1k``). The controller must write the canonical
form and compare canonical forms, or each resync would see a difference that
is not there and rewrite the slice (churn).

Rules copied from k8s.io/apimachinery ``Quantity.CanonicalizeBytes`` for
integers: a binary-suffixed input whose value is a multiple of 1024 (and at
least 1024) keeps the largest exact binary suffix; anything else is decimal SI
with the largest exponent of 1000 that divides it exactly.
"""

from __future__ import annotations

import re

_BINARY = (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))
_DECIMAL = (("E", 10**18), ("P", 10**15), ("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 10**3))
_FACTORS = dict(_BINARY + _DECIMAL)
_QUANTITY_RE = re.compile(r"^([+-]?[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")


def canonical_bytes(value: int) -> str:
    """The canonical Quantity for ``value`` bytes as this controller writes it (``16Gi``)."""
    if value >= 1024 and value % 1024 == 0:
        for suffix, factor in _BINARY:
            if value % factor == 0:
                return f"{value // factor}{suffix}"
    return _canonical_decimal(value)


def _canonical_decimal(value: int) -> str:
    if value == 0:
        return "0"
    for suffix, factor in _DECIMAL:
        if value % factor == 0:
            return f"{value // factor}{suffix}"
    return str(value)


def canonicalise(text: str) -> str:
    """The canonical form of a stored integer Quantity; other forms are returned unchanged.

    Unchanged means "compares different", which costs one harmless update at
    worst; it never hides a real difference.
    """
    match = _QUANTITY_RE.match(text.strip())
    if not match:
        return text
    number, suffix = match.groups()
    value = int(number) * (_FACTORS[suffix] if suffix else 1)
    if value < 0:
        return text
    if suffix in dict(_BINARY):
        return canonical_bytes(value)
    return _canonical_decimal(value)
