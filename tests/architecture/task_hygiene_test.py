"""The root conftest fails an async test that leaves a task running, and only such a test."""

from __future__ import annotations

import asyncio

import pytest
from _pytest.outcomes import Failed
from mockaccel_hygiene import fail_on_leaked_tasks


async def _leaky() -> None:
    asyncio.get_running_loop().create_task(asyncio.sleep(3600), name="forgotten")


async def _tidy() -> None:
    task = asyncio.get_running_loop().create_task(asyncio.sleep(3600), name="owned")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_a_leaked_task_fails_the_test_and_is_cancelled() -> None:
    with pytest.raises(Failed, match="left 1 asyncio task.*forgotten"):
        asyncio.run(fail_on_leaked_tasks(_leaky)())


def test_a_test_that_owns_its_tasks_passes() -> None:
    asyncio.run(fail_on_leaked_tasks(_tidy)())
