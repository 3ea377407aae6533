"""The passphrase engine's words: a 7776-word list and an unbiased word choice.

One implementation for both devices that generate passphrases: the vfio-server's
emulated device and the sysfs simulator's, so both draw from the same kind of list
the same way (docs/abi.md §2.4).

Why rejection sampling: the original took 16 random bits modulo 7776, which
makes the first 3328 words (65536 mod 7776) more likely than the rest. Here an
index is drawn from the smallest number of bits that covers 7776 (13 bits,
0..8191) and draws of 7776 or more are thrown away, so every word is equally
likely. Randomness comes from ``secrets`` (the OS CSPRNG); tests inject a
deterministic bit source.

The list itself is the EFF large wordlist obtained at build time from the
``diceware`` package on PyPI (tools/provision/wordlist.sh); it is never committed.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mockaccel_common.errors import WordlistError
from mockaccel_common.regmap import WORDLIST_WORDS

RandBits = Callable[[int], int]
_WORD_RE = re.compile(r"^[a-z][a-z-]*$")


@dataclass(frozen=True)
class Wordlist:
    """Exactly ``WORDLIST_WORDS`` words, in file order (the index is the dice roll)."""

    words: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        if len(self.words) != WORDLIST_WORDS:
            raise WordlistError(f"{self.source}: {len(self.words)} words, expected exactly {WORDLIST_WORDS}")
        for number, word in enumerate(self.words, start=1):
            if not _WORD_RE.match(word):
                raise WordlistError(f"{self.source}: line {number} is not a lower-case word: {word!r}")

    @classmethod
    def parse(cls, data: bytes, source: str) -> Wordlist:
        """One ASCII word per line (the format of docs/abi.md §5.6); ``source`` names it in errors."""
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError as exc:
            raise WordlistError(f"{source}: not ASCII: {exc}") from exc
        return cls(tuple(text.splitlines()), source)


def unbiased_index(n: int, randbits: RandBits = secrets.randbits) -> int:
    """A uniform index in ``range(n)`` by rejection sampling over ``randbits``."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    bits = max(1, (n - 1).bit_length())
    while True:
        candidate = randbits(bits)
        if candidate < n:
            return candidate


def choose_words(words: Sequence[str], count: int, randbits: RandBits = secrets.randbits) -> list[str]:
    """``count`` words drawn independently and uniformly (repeats allowed, as with dice)."""
    return [words[unbiased_index(len(words), randbits)] for _ in range(count)]
