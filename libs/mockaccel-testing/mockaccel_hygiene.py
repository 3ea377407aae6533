"""Test hygiene for every test in the monorepo (the root conftest.py installs the hooks).

Temporary directories: each pytest process gets a base directory of its own
(``own_basetemp``). Pants runs many pytest processes at once, and with
pytest's default root (``<tmp>/pytest-of-<user>``) every session, as it
finishes, deletes the older numbered directories of all sessions; two doing
it at once race (ENOTEMPTY on the same "garbage-*" directory), and the
warning pytest raises for that is an error under ``filterwarnings = error``:
a passing test file then fails. The directory is removed when the session
passed and kept, for a look, when it failed.

Leaked tasks: an async test that returns while an asyncio task it started is still running
fails: such a task outlives the code that should own it (style habit 12), and
pytest-asyncio would otherwise cancel it silently when it closes the loop.
Tasks that existed before the test body started (those of async fixtures,
which their own teardown stops) are not the test's to finish.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import shutil
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

_OWN_BASETEMP = pytest.StashKey[Path]()
SETTLE_ROUNDS = 5
# Tasks the test does not own although they start while it runs: an aiohttp server
# (a fixture's fake API server) handles each accepted connection in a task of its
# own, which the server's cleanup in the fixture's teardown ends.
SERVER_OWNED = ("RequestHandler.start",)


def _owned_by_the_test(task: asyncio.Task[Any]) -> bool:
    name = getattr(task.get_coro(), "__qualname__", "")
    return not name.endswith(SERVER_OWNED)


def fail_on_leaked_tasks(test: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Coroutine[Any, Any, Any]]:
    """Wrap an async test: after its body, fail if tasks it created are still pending (cancelling them)."""

    @functools.wraps(test)
    async def checked(*args: Any, **kwargs: Any) -> Any:
        before = asyncio.all_tasks()
        result = await test(*args, **kwargs)
        current = asyncio.current_task()
        for _ in range(SETTLE_ROUNDS):  # tasks that are finishing get to finish
            leaked = [
                t for t in asyncio.all_tasks() - before if t is not current and not t.done() and _owned_by_the_test(t)
            ]
            if not leaked:
                return result
            await asyncio.sleep(0)
        for task in leaked:
            task.cancel()
        await asyncio.gather(*leaked, return_exceptions=True)
        names = ", ".join(sorted(f"{t.get_name()} ({t.get_coro()!r:.80})" for t in leaked))
        pytest.fail(f"the test left {len(leaked)} asyncio task(s) running: {names}", pytrace=False)

    return checked


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    function = getattr(item, "obj", None)
    if function is not None and inspect.iscoroutinefunction(function):
        item.obj = fail_on_leaked_tasks(function)  # type: ignore[attr-defined]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Unless ``--basetemp`` was given, this process's temporary files go in a directory of its own."""
    if config.option.basetemp is None:
        own = Path(tempfile.mkdtemp(prefix="pytest-"))
        config.option.basetemp = str(own)
        config.stash[_OWN_BASETEMP] = own


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the directory ``pytest_configure`` made when every test passed; keep it when one failed."""
    own = session.config.stash.get(_OWN_BASETEMP, None)
    if own is not None and exitstatus == 0:
        shutil.rmtree(own, ignore_errors=True)
