"""The one way tests wait: poll to a deadline, never sleep a fixed time.

``wait_until`` polls a probe until it returns something truthy and returns
that value, so a test waits on exactly the object it then asserts on (the
rule that keeps e2e tests from racing the control plane: wait for the pod's
binding itself, not for the claim's allocation that precedes it). A 404 from
the API server counts as "not yet". At the deadline the test fails with what
it waited for and the last value seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

T = TypeVar("T")
DEADLINE = 60.0
INTERVAL = 0.05


async def wait_until(
    what: str, probe: Callable[[], Awaitable[T | None]], within: float = DEADLINE, interval: float = INTERVAL
) -> T:
    """The first truthy value ``probe`` returns; fails the test at the deadline."""
    deadline = time.monotonic() + within
    last: T | None = None
    while True:
        try:
            last = await probe()
        except ApiException as exc:
            if exc.status != 404:
                raise
            last = None
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within:.0f}s waiting for {what}; last seen: {getattr(last, 'status', last)}")
        await asyncio.sleep(interval)


async def wait_for(
    what: str, fetch: Callable[[], Awaitable[T]], ok: Callable[[T], bool], within: float = DEADLINE
) -> T:
    """The first object ``fetch`` returns that satisfies ``ok``."""

    async def probe() -> T | None:
        value = await fetch()
        return value if ok(value) else None

    return await wait_until(what, probe, within)


def wait_until_sync(
    what: str,
    probe: Callable[[], T | None],
    within: float = DEADLINE,
    interval: float = INTERVAL,
    not_yet: tuple[type[BaseException], ...] = (OSError, ConnectionError),
) -> T:
    """``wait_until`` for synchronous probes (a socket not there yet, ``not_yet``, counts as not yet)."""
    deadline = time.monotonic() + within
    while True:
        with contextlib.suppress(*not_yet):
            if value := probe():
                return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within:.0f}s waiting for {what}")
        time.sleep(interval)
