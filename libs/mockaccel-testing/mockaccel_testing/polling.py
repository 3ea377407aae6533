"""Poll the API server to a deadline instead of sleeping a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

T = TypeVar("T")
DEADLINE = 60.0


async def wait_for(
    what: str, fetch: Callable[[], Awaitable[T]], ok: Callable[[T], bool], within: float = DEADLINE
) -> T:
    """Poll `fetch` until `ok` holds (404 counts as "not yet"); fail with the last value seen."""
    deadline = time.monotonic() + within
    last: T | None = None
    while time.monotonic() < deadline:
        try:
            last = await fetch()
            if ok(last):
                return last
        except ApiException as exc:
            if exc.status != 404:
                raise
        await asyncio.sleep(0.2)
    pytest.fail(f"timed out after {within:.0f}s waiting for {what}; last seen: {getattr(last, 'status', last)}")
