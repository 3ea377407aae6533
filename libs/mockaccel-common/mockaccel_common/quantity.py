"""The one size grammar of mock-accel: Kubernetes integer Quantities.

Every size a user writes (a topology file's ``memory``, the vfio-server's
``-m``) and every size the controller publishes uses the grammar of
k8s.io/apimachinery's ``Quantity`` for whole numbers, so a size means the same
thing in a TOML file, on a command line and in a ResourceSlice: binary
suffixes ``Ki Mi Gi Ti Pi Ei`` are powers of 1024, decimal suffixes
``k M G T P E`` are powers of 1000 (``16G`` is 16·10⁹ bytes, ``16Gi`` is
16·2³⁰), a bare number is bytes. Signs, fractions, exponents and anything else
are refused with a message, never guessed.

Canonical form: the API server canonicalises every Quantity it stores
(``17179869184`` is stored as ``16Gi``, ``1000`` as ``1k``). The controller
writes and compares canonical forms, or each resync would see a difference
that is not there and rewrite the slice. Rules follow apimachinery's
``CanonicalizeBytes`` for integers: a binary-suffixed input whose value is a
multiple of 1024 (and at least 1024) keeps the largest exact binary suffix;
anything else is decimal SI with the largest exponent of 1000 dividing it.
"""

from __future__ import annotations

import re

from mockaccel_common.errors import InvalidInputError

_BINARY = (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))
_DECIMAL = (("E", 10**18), ("P", 10**15), ("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 10**3))
_FACTORS = dict(_BINARY + _DECIMAL)
_BINARY_SUFFIXES = frozenset(dict(_BINARY))
_QUANTITY_RE = re.compile(r"([+-]?[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?")
MAX_BYTES = (1 << 64) - 1  # device sizes are 64-bit registers


class QuantityError(InvalidInputError):
    """A size that is not a positive whole Kubernetes Quantity of at most 64 bits."""


def parse_quantity(text: str) -> int:
    """Bytes from ``16Gi``, ``16G`` (10⁹), ``2048Mi``, ``4096``; positive and within 64 bits."""
    match = _QUANTITY_RE.fullmatch(text)
    if not match or match.group(1)[0] in "+-":
        raise QuantityError(
            f"not a size: {text!r} (a whole number with an optional suffix Ki Mi Gi Ti Pi Ei or k M G T P E, e.g. 16Gi)"
        )
    number, suffix = match.groups()
    value = int(number, 10) * (_FACTORS[suffix] if suffix else 1)
    if value == 0:
        raise QuantityError(f"size must be positive: {text!r}")
    if value > MAX_BYTES:
        raise QuantityError(f"size does not fit in 64 bits: {text!r}")
    return value


def canonical_bytes(value: int) -> str:
    """The canonical Quantity for ``value`` bytes as the API server stores it (``16Gi``)."""
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
    match = _QUANTITY_RE.fullmatch(text.strip())
    if not match:
        return text
    number, suffix = match.groups()
    value = int(number) * (_FACTORS[suffix] if suffix else 1)
    if value < 0:
        return text
    if suffix in _BINARY_SUFFIXES:
        return canonical_bytes(value)
    return _canonical_decimal(value)
