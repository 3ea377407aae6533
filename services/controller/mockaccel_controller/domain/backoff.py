"""Exponential backoff with jitter, capped: how long to wait before retrying the API.

Jitter spreads the retries of every node's controller after an API server
outage, so they do not return in lock-step. The random source is injected
so tests can pin it.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    def __init__(self, initial: float, maximum: float, *, rng: Callable[[], float] = random.random) -> None:
        self.initial = initial
        self.maximum = maximum
        self._rng = rng
        self.attempt = 0

    def next_delay(self, hint: float | None = None) -> float:
        """The next wait: the server's hint when given, else initial·2ⁿ capped, times a jitter in [0.5, 1)."""
        self.attempt += 1
        if hint is not None:
            return min(max(hint, 0.0), self.maximum)
        ceiling = min(self.maximum, self.initial * 2 ** (self.attempt - 1))
        return float(ceiling * (0.5 + self._rng() / 2))

    def reset(self) -> None:
        self.attempt = 0
