"""The controller's lifecycle: event sources feeding one reconcile loop.

Sources (each a root task of the service's TaskGroup) only *request* a pass:
inotify on the sysfs class directory and device directories, kernel uevents,
a watch on this node's slices (a slice deleted by kubelet or by hand), the
agent-socket probe and the periodic resync. A request names the devices to
re-read: the ones a sysfs event names, none for a slice or agent change (the
pass only re-plans), all for the startup pass, the resync and a lost event
queue. Requests are coalesced until none came for ``debounce`` seconds, so a
burst of events costs one pass, and passes never overlap. Retryable API errors back off
inside the loop (exponential, jittered, capped); anything else ends the
service with a non-zero exit, as the runner prescribes.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

from structlog.contextvars import bound_contextvars

from mockaccel_common.kube import api_client
from mockaccel_common.logging import get_logger
from mockaccel_common.runner import run_service
from mockaccel_common.sysfs.uevents import UeventListener
from mockaccel_common.sysfs.watcher import SysfsWatcher
from mockaccel_controller.adapters.agent import agent_serving
from mockaccel_controller.adapters.k8s import USER_AGENT, KubeApi
from mockaccel_controller.domain.backoff import Backoff
from mockaccel_controller.errors import (
    ApiRefusedError,
    ApiUnavailableError,
    ConflictError,
    NodeMissingError,
    RetryableError,
)
from mockaccel_controller.publishing import Publisher
from mockaccel_controller.settings import Settings

SERVICE = "mockaccel_controller"
QUIET_CAP = 5  # a steady stream of events still gets a pass every 5 debounce periods
NO_DEVICES: frozenset[str] = frozenset()  # a request that re-plans without re-reading sysfs


class Controller:
    """Owns the wake-up signal and the root tasks; one instance per node."""

    def __init__(self, settings: Settings, api: KubeApi, log: Any) -> None:
        self.settings = settings
        self.api = api
        self.log = log
        self.publisher = Publisher(settings, api, log)
        self._wake = asyncio.Event()
        self._reasons: set[str] = set()
        self._rescan = False  # the next pass reads every device
        self._changed: set[str] = set()  # the devices the next pass re-reads
        self._agent_problem: str | None = "not checked yet"
        self._discovered = asyncio.Event()

    def request(self, reason: str, devices: frozenset[str] | None = None) -> None:
        """Ask for a pass re-reading ``devices`` (None: all); cheap and callable from any loop callback."""
        self._remember(devices)
        self._reasons.add(reason)
        self._wake.set()

    def _remember(self, devices: frozenset[str] | None) -> None:
        if devices is None:
            self._rescan = True
        else:
            self._changed |= devices

    def _take_changes(self) -> frozenset[str] | None:
        rescan, changed = self._rescan, frozenset(self._changed)
        self._rescan, self._changed = False, set()
        return None if rescan else changed

    def _backoff(self) -> Backoff:
        return Backoff(self.settings.retry_initial_delay, self.settings.retry_max_delay)

    async def _agent_ready(self) -> bool:
        if not self.settings.require_agent:
            return True
        problem = await agent_serving(self.settings.plugin_dir)
        if problem != self._agent_problem:
            if problem is None:
                self.log.info("agent_serving", plugin_dir=str(self.settings.plugin_dir))
            else:
                self.log.warning("publishing_paused", reason=problem, plugin_dir=str(self.settings.plugin_dir))
        self._agent_problem = problem
        return problem is None

    async def reconcile_loop(self) -> None:
        backoff = self._backoff()
        unavailable = False
        self.request("startup")
        while True:
            await self._wake.wait()
            if self.settings.debounce:
                await self._quiet(self.settings.debounce)
            self._wake.clear()
            reasons, self._reasons = self._reasons, set()
            changed = self._take_changes()
            if not await self._agent_ready():
                self._remember(changed)  # read when the agent serves again
                continue
            try:
                await self.publisher.reconcile(reasons, changed)
            except RetryableError as exc:
                delay = backoff.next_delay(exc.delay)
                unavailable = unavailable or isinstance(exc, ApiUnavailableError)
                self.log.warning(_event_of(exc), error=str(exc), retry_in_s=round(delay, 3), attempt=backoff.attempt)
                await asyncio.sleep(delay)
                self.request("retry", changed)
                continue
            finally:
                if self.api.version:
                    self._discovered.set()
                if self.publisher.take_foreign_change():  # seen by the watch while this pass wrote
                    self.request("slice_changed", NO_DEVICES)
            if unavailable:
                self.log.info("api_recovered", attempts=backoff.attempt)
                unavailable = False
            backoff.reset()

    async def _quiet(self, quiet: float) -> None:
        """Wait until no request came for ``quiet`` seconds, or ``QUIET_CAP`` times that in all.

        A fixed delay from the first event cut a burst that outlasts it in two
        passes (the simulator writes a PF's 7 VF directories over ~100 ms), each
        writing the pool's slice; waiting for the burst to end writes it once.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + quiet * QUIET_CAP
        while (left := deadline - loop.time()) > 0:
            self._wake.clear()
            try:
                async with asyncio.timeout(min(quiet, left)):
                    await self._wake.wait()
            except TimeoutError:
                return

    async def slice_watch(self) -> None:
        """Request a pass whenever someone else changes this node's slices."""
        await self._discovered.wait()
        backoff = self._backoff()
        resource_version: str | None = None
        while True:
            try:
                if resource_version is None:
                    self.publisher.watching = False
                    resource_version = self.publisher.list_version
                    if resource_version is None:
                        resource_version = await self.api.list_version()
                        # Every change after this version reaches the watch: the publisher may plan
                        # against its own view from now on, once it has listed again itself.
                        self.publisher.forget_stored()
                        self.request("slice_relist", NO_DEVICES)
                    # else: the watch starts where the publisher's view was listed, so it reports
                    # every change the view lacks, and the view needs no second list (on a
                    # 10,000-device node a list is ~2 s of JSON and the peak of memory).
                    self.publisher.watching = True
                async for event in self.api.watch(resource_version):
                    backoff.reset()
                    resource_version = event.resource_version or resource_version
                    if event.kind != "BOOKMARK" and self.publisher.someone_else_wrote(
                        event.kind, event.name, event.resource_version
                    ):
                        self.request(f"slice_{event.kind.lower()}", NO_DEVICES)
            except ConflictError as exc:  # 410 Gone: the resourceVersion is too old; re-list
                self.log.debug("slice_watch_expired", error=str(exc))
                self.publisher.forget_stored()  # (its list may be what was too old)
                resource_version = None
            except RetryableError as exc:
                self.publisher.watching = False  # changes may be missed until the watch is back
                self.publisher.forget_stored()
                delay = backoff.next_delay(exc.delay)
                self.log.warning(_event_of(exc), source="slice_watch", error=str(exc), retry_in_s=round(delay, 3))
                resource_version = None
                await asyncio.sleep(delay)

    async def agent_watch(self) -> None:
        """Request a pass when the node agent starts or stops serving."""
        serving = False
        while True:
            now = await agent_serving(self.settings.plugin_dir) is None
            if now != serving:
                serving = now
                self.request("agent_serving" if now else "agent_gone", NO_DEVICES)
            await asyncio.sleep(self.settings.agent_check_interval)

    async def resync(self) -> None:
        while True:
            await asyncio.sleep(self.settings.resync_interval)
            self.request("resync")

    async def remove_slices(self) -> None:
        """Best effort within the drain deadline: a later start or kubelet's wipe cleans up the rest."""
        try:
            async with asyncio.timeout(self.settings.drain_timeout * 0.8):
                await self.publisher.remove_all()
        except (RetryableError, TimeoutError) as exc:
            self.log.warning("slices_not_removed", error=str(exc))


def _event_of(exc: RetryableError) -> str:
    if isinstance(exc, ApiRefusedError):
        return "api_refused"
    if isinstance(exc, ApiUnavailableError):
        return "api_unavailable"
    if isinstance(exc, NodeMissingError):
        return "node_missing"
    return "reconcile_conflict"


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    log = get_logger(SERVICE).bind(node=settings.node_name)

    async def start(stack: AsyncExitStack, group: asyncio.TaskGroup) -> None:
        client = await stack.enter_async_context(api_client(settings.kubeconfig, user_agent=USER_AGENT))
        api = KubeApi(
            client, node=settings.node_name, driver=settings.driver_name, request_timeout=settings.request_timeout
        )
        controller = Controller(settings, api, log)
        if settings.remove_on_shutdown:
            stack.push_async_callback(controller.remove_slices)  # runs before api.close (LIFO)
        try:
            watcher = SysfsWatcher(settings.sysfs_root, controller.request)
            watcher.start()
            stack.callback(watcher.close)
        except OSError as exc:
            log.warning("inotify_unavailable", error=str(exc))
        if settings.uevents:
            # inotify misses class devices the kernel creates or removes; uevents do not.
            uevents = UeventListener(controller.request)
            try:
                uevents.start()
                stack.callback(uevents.close)
                log.info("uevents_listening", subsystem="mock-accel")
            except OSError as exc:
                log.warning("uevents_unavailable", error=str(exc))
        group.create_task(controller.reconcile_loop(), name="reconcile")
        group.create_task(controller.slice_watch(), name="slice_watch")
        group.create_task(controller.resync(), name="resync")
        if settings.require_agent:
            group.create_task(controller.agent_watch(), name="agent_watch")

    with bound_contextvars(node=settings.node_name):  # the runner's own events carry the node too
        await run_service(SERVICE, start, drain_timeout=settings.drain_timeout, stop=stop)
