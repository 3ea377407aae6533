from __future__ import annotations

import pytest

from mockaccel_controller.domain.backoff import Backoff


def test_delays_double_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    low = Backoff(0.2, 3.0, rng=lambda: 0.0)
    high = Backoff(0.2, 3.0, rng=lambda: 0.999999)
    assert [round(low.next_delay(), 3) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.5, 1.5]
    assert [round(high.next_delay(), 2) for _ in range(6)] == [0.2, 0.4, 0.8, 1.6, 3.0, 3.0]


@pytest.mark.parametrize(("hint", "expected"), [(2.0, 2.0), (99.0, 5.0), (-1.0, 0.0)], ids=["kept", "capped", "floor"])
def test_a_server_hint_wins_but_is_capped(hint: float, expected: float) -> None:
    assert Backoff(0.2, 5.0).next_delay(hint) == expected


def test_reset_starts_over() -> None:
    backoff = Backoff(1.0, 60.0, rng=lambda: 0.0)
    backoff.next_delay()
    backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 0.5
