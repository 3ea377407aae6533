from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import pytest
from structlog.testing import capture_logs

from mockaccel_common.runner import DrainTimeoutError, run_service


@pytest.mark.asyncio
async def test_stop_cancels_tasks_and_closes_resources_in_reverse_order() -> None:
    order: list[str] = []
    stop = asyncio.Event()

    async def worker() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            order.append("task-cancelled")

    async def start(stack: AsyncExitStack, group: asyncio.TaskGroup) -> None:
        stack.callback(order.append, "first-resource-closed")
        stack.callback(order.append, "second-resource-closed")
        group.create_task(worker())
        asyncio.get_running_loop().call_soon(stop.set)

    with capture_logs() as logs:
        await run_service("svc", start, drain_timeout=2, stop=stop)
    assert order == ["task-cancelled", "second-resource-closed", "first-resource-closed"]
    assert [entry["event"] for entry in logs][-1] == "service_stopped"


@pytest.mark.asyncio
async def test_a_failing_root_task_stops_the_service() -> None:
    async def start(stack: AsyncExitStack, group: asyncio.TaskGroup) -> None:
        async def broken() -> None:
            raise RuntimeError("boom")

        group.create_task(broken())

    with pytest.raises(ExceptionGroup) as caught:
        await run_service("svc", start, drain_timeout=2)
    assert caught.group_contains(RuntimeError, match="boom")


@pytest.mark.asyncio
async def test_drain_is_bounded() -> None:
    stop = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(30)

    async def start(stack: AsyncExitStack, group: asyncio.TaskGroup) -> None:
        group.create_task(stubborn())
        stop.set()

    with pytest.raises(DrainTimeoutError):
        await run_service("svc", start, drain_timeout=0.2, stop=stop)
    # The runner abandoned the stuck cleanup: in a service its caller now exits the process.
    # Here the test ends the abandoned tasks itself (the task-hygiene hook checks it did).
    abandoned = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert abandoned
    for task in abandoned:
        task.cancel()
    await asyncio.gather(*abandoned, return_exceptions=True)
