from __future__ import annotations

from collections import Counter

import pytest

from mockaccel_common.errors import WordlistError
from mockaccel_common.passphrase import Wordlist, choose_words, unbiased_index


def test_rejection_sampling_discards_draws_past_n() -> None:
    asked: list[int] = []
    draws = iter([8191, 7776, 7775])

    def randbits(bits: int) -> int:
        asked.append(bits)
        return next(draws)

    assert unbiased_index(7776, randbits) == 7775
    assert asked == [13, 13, 13]  # 13 bits cover 0..8191; two draws rejected


def test_every_index_is_reachable_and_roughly_uniform() -> None:
    counts = Counter(unbiased_index(6) for _ in range(6000))
    assert set(counts) == set(range(6))
    assert min(counts.values()) > 800


def test_choose_words_draws_independently() -> None:
    words = [f"w{i}" for i in range(10)]
    draws = iter([3, 9, 3])
    assert choose_words(words, 3, lambda bits: next(draws)) == ["w3", "w9", "w3"]


@pytest.mark.parametrize(
    ("text", "message"),
    [("abc\n" * 7775, "7775 words"), ("abc\n" * 7775 + "Bad\n", "line 7776"), ("", "0 words")],
    ids=["short", "uppercase", "empty"],
)
def test_malformed_wordlists_are_refused(text: str, message: str) -> None:
    with pytest.raises(WordlistError, match=message):
        Wordlist.parse(text.encode(), "words.txt")


def test_a_non_ascii_wordlist_is_refused() -> None:
    with pytest.raises(WordlistError, match="words.txt: not ASCII"):
        Wordlist.parse(b"abc\n" * 7775 + "caf\u00e9\n".encode(), "words.txt")
