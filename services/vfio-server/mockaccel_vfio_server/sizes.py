"""Strict parsing of memory sizes given on the command line (``-m``, ``--vf-memory``).

The original server accepted any suffix and silently ignored what it did not
know, so ``-m 16X`` meant 16 bytes. Here a size is digits with an optional
binary suffix and anything else is an error the user sees at start-up.
"""

from __future__ import annotations

import re

_SIZE_RE = re.compile(r"^([0-9]+)([KMGT]i?)?$", re.IGNORECASE)
_SHIFT = {"k": 10, "m": 20, "g": 30, "t": 40}
MAX_SIZE = (1 << 64) - 1  # MEMORY_SIZE is a 64-bit register pair


def parse_size(text: str) -> int:
    """Bytes from ``16G``, ``16Gi``, ``2048M``, ``4096`` (suffixes are powers of 1024).

    Raises ValueError for garbage, zero, and sizes that do not fit in 64 bits.
    """
    match = _SIZE_RE.match(text.strip())
    if not match:
        raise ValueError(f"not a size: {text!r} (digits with an optional K, M, G or T suffix, e.g. 16Gi)")
    number, suffix = match.groups()
    value = int(number, 10) << (_SHIFT[suffix[0].lower()] if suffix else 0)
    if value == 0:
        raise ValueError(f"size must be positive: {text!r}")
    if value > MAX_SIZE:
        raise ValueError(f"size does not fit in 64 bits: {text!r}")
    return value


def format_size(value: int) -> str:
    """The shortest exact binary form (``17179869184`` → ``16Gi``), for logs and docs."""
    for suffix, shift in (("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)):
        if value and value % (1 << shift) == 0:
            return f"{value >> shift}{suffix}"
    return str(value)
