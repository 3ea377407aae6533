"""The service runner: uvloop, one TaskGroup, one stop path, a bounded drain.

A service hands ``run_service`` a ``start`` coroutine that enters its
resources on an AsyncExitStack and spawns its root tasks in the TaskGroup.
SIGTERM/SIGINT only set the stop event; ``_wait_for_stop`` then raises
``_Stop``, the group cancels its siblings, resources close in reverse order,
and all of it must finish within ``drain_timeout``. After the first signal
the handlers are removed, so a second signal kills the process at once.
A root task that fails stops the service with a non-zero exit: Kubernetes
restarts it, rather than it living on half-alive.
"""

from __future__ import annotations

import asyncio
import importlib
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any

import uvloop

from mockaccel_common import lean_kubernetes
from mockaccel_common.errors import SettingsError
from mockaccel_common.logging import configure_logging, get_logger

StartFn = Callable[[AsyncExitStack, asyncio.TaskGroup], Awaitable[None]]
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _Stop(Exception):
    """Raised inside the TaskGroup to end it after a stop request."""


class DrainTimeoutError(Exception):
    """Shutdown did not finish within the drain deadline."""


async def run_service(
    name: str,
    start: StartFn,
    *,
    drain_timeout: float,
    stop: asyncio.Event | None = None,
) -> None:
    log = get_logger(name)
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()

    def on_signal(signum: int) -> None:
        log.info("stop_requested", signal=signal.Signals(signum).name)
        stop.set()
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)

    async def wait_for_stop() -> None:
        await stop.wait()
        raise _Stop

    async def supervise() -> None:
        async with AsyncExitStack() as stack:
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(wait_for_stop(), name="wait_for_stop")
                    await start(stack, group)
                    log.info("service_started")
            except* _Stop:
                pass

    for sig in _SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    abandoned = False
    body = asyncio.create_task(supervise(), name=f"{name}-supervisor")
    stopping = asyncio.create_task(stop.wait(), name=f"{name}-stop")
    try:
        await asyncio.wait({body, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not body.done():
            log.info("draining", deadline_s=drain_timeout)
            await asyncio.wait({body}, timeout=drain_timeout)
            if not body.done():
                # Abandon the stuck cleanup: the caller exits the process, and
                # closing the loop cancels what is left, task by task.
                abandoned = True
                body.cancel()
                log.error("drain_deadline_exceeded", deadline_s=drain_timeout)
                raise DrainTimeoutError(f"{name} did not stop within {drain_timeout} s")
        body.result()
    finally:
        stopping.cancel()
        if not body.done() and not abandoned:
            body.cancel()
            await asyncio.wait({body})
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)
    log.info("service_stopped")


def run_main(name: str, main: Coroutine[Any, Any, None]) -> int:
    """Run ``main`` on uvloop; the process exit code (0, or 1 on failure)."""
    log = get_logger(name)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        try:
            runner.run(main)
        except DrainTimeoutError:
            return 1
        except Exception as exc:  # the top-level shutdown boundary
            log.error("service_failed", error=repr(exc), exc_info=exc)
            return 1
    return 0


def main(service: str, *, kubernetes: bool = False, argv: list[str] | None = None) -> int:
    """Every service's entry point: load settings, configure logging, run ``<service>.app.run``.

    Services share one layout, so the settings and the app are found by name
    (``<service>.settings.Settings``, ``<service>.app.run``). A bad setting is
    one line on stderr and exit 2, in every service, before any logging is
    configured. ``kubernetes=True`` installs the lean kubernetes_asyncio loader
    before the app (and so the client library) is imported.
    """
    if kubernetes:
        lean_kubernetes.install()
    prog = service.replace("_", "-")
    settings_cls = importlib.import_module(f"{service}.settings").Settings
    try:
        settings = settings_cls.load(argv)
    except SettingsError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    app = importlib.import_module(f"{service}.app")
    return run_main(service, app.run(settings))
