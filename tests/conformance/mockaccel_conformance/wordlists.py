"""A firmware wordlist other than the provisioned one, to tell the two passphrase sources apart."""

from __future__ import annotations

from mockaccel_common import regmap


def synthetic_words(prefix: str = "qz") -> list[str]:
    """``WORDLIST_WORDS`` distinct valid words (``[a-z][a-z-]*``): ``prefix`` plus three letters."""
    return [prefix + "".join(chr(ord("a") + (i // 26**k) % 26) for k in range(3)) for i in range(regmap.WORDLIST_WORDS)]


def as_firmware(words: list[str]) -> str:
    return "".join(f"{word}\n" for word in words)
