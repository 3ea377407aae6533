"""NodePrepareResources and NodeUnprepareResources, free of gRPC.

Ordering is what makes this crash-safe (docs/node-agent.md): prepare marks
the devices, writes the CDI spec and only then records the claim in the
checkpoint; unprepare frees the devices, deletes the spec and only then drops
the claim. Whatever a crash interrupts, start-up reconciliation makes sysfs
and the CDI directory match the checkpoint again, and kubelet's repeated call
then finishes the job. A failure in the middle of a call rolls back what that
call did. Calls that queue for the state lock are served as one batch with one
checkpoint write (group commit, ``_batched``); the order above holds per claim.

The state change of a call runs as a shielded task: grpclib cancels handlers
when kubelet's connection closes, and a half-finished transition must not be
abandoned; the repeated call finds it finished and gets the same answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from structlog.contextvars import bound_contextvars

from mockaccel_common.logging import get_logger
from mockaccel_common.model import pool_name
from mockaccel_node_agent.adapters.faults import FaultPoints
from mockaccel_node_agent.adapters.host import Host
from mockaccel_node_agent.adapters.metrics import Metrics
from mockaccel_node_agent.adapters.state import CheckpointStore, SerialLock
from mockaccel_node_agent.domain.cdi_building import DeviceSource, cdi_device_id
from mockaccel_node_agent.domain.checkpoint import Checkpoint
from mockaccel_node_agent.domain.claims import (
    ClaimAllocation,
    ClaimRef,
    PreparedClaim,
    PreparedDevice,
    WantedDevice,
    check_allocation,
    check_pool,
    dedupe,
    wanted_devices,
)
from mockaccel_node_agent.errors import DeviceUnavailableError, NodeAgentError

log = get_logger("mockaccel_node_agent.preparing")
T = TypeVar("T")
R = TypeVar("R")
Item = TypeVar("Item")
Ready = tuple[ClaimRef, tuple[WantedDevice, ...]]


def _ready_uid(item: Ready) -> str:
    return item[0].uid


def _ref_uid(item: ClaimRef) -> str:
    return item.uid


class ClaimSource(Protocol):
    async def get(self, ref: ClaimRef) -> ClaimAllocation: ...


@dataclass(frozen=True)
class ClaimOutcome:
    devices: tuple[PreparedDevice, ...] = ()
    error: str = ""


def _describe(exc: NodeAgentError) -> str:
    return str(exc) or type(exc).__name__


class Preparer:
    def __init__(
        self,
        *,
        driver: str,
        node: str,
        host: Host,
        store: CheckpointStore,
        lock: SerialLock,
        claims: ClaimSource,
        metrics: Metrics,
        faults: FaultPoints | None = None,
        fetch_concurrency: int = 8,
    ) -> None:
        self.driver = driver
        self.node = node
        self.host = host
        self.store = store
        self.lock = lock
        self.claims = claims
        self.metrics = metrics
        self.faults = faults or FaultPoints()
        self._inflight: set[asyncio.Task[object]] = set()
        # Calls waiting for the state lock (group commit, see _batched).
        self._prepare_queue: list[tuple[list[Ready], asyncio.Future[dict[str, ClaimOutcome]]]] = []
        self._unprepare_queue: list[tuple[list[ClaimRef], asyncio.Future[dict[str, str]]]] = []
        self._fetch_concurrency = fetch_concurrency

    # --- lifecycle -----------------------------------------------------------

    async def _shielded(self, work: Callable[[], Awaitable[T]]) -> T:
        async def body() -> T:
            return await work()

        task: asyncio.Task[T] = asyncio.create_task(body(), name="state-change")
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return await asyncio.shield(task)

    async def aclose(self) -> None:
        """Let state changes that are under way finish (their callers may be gone)."""
        if self._inflight:
            await asyncio.wait(set(self._inflight))

    # --- prepare -------------------------------------------------------------

    async def prepare(self, refs: Sequence[ClaimRef]) -> dict[str, ClaimOutcome]:
        started = time.monotonic()
        unique = dedupe(refs)
        outcomes: dict[str, ClaimOutcome] = {}
        fetched = await self._fetch_all(unique)
        self.faults.hit("prepare:after_claim_fetch")
        ready: list[Ready] = []
        for ref in unique:
            result = fetched[ref.uid]
            if isinstance(result, NodeAgentError):
                outcomes[ref.uid] = self._failed("prepare", ref, result)
            else:
                ready.append((ref, result))
        if ready:
            outcomes.update(
                await self._shielded(
                    lambda: self._batched(self._prepare_queue, ready, self._prepare_locked, _ready_uid)
                )
            )
        elapsed = time.monotonic() - started
        for ref in unique:
            self.metrics.prepare_duration.observe(elapsed / max(len(unique), 1))
            self.metrics.prepare_claims.labels(result="error" if outcomes[ref.uid].error else "success").inc()
        return {ref.uid: outcomes[ref.uid] for ref in unique}

    async def _fetch_all(self, refs: Sequence[ClaimRef]) -> dict[str, tuple[WantedDevice, ...] | NodeAgentError]:
        # Bounded fan-out: a request naming many claims must not open as many API calls at once.
        slots = asyncio.Semaphore(self._fetch_concurrency)

        async def fetch(ref: ClaimRef) -> tuple[WantedDevice, ...] | NodeAgentError:
            try:
                ref.validate()
                async with slots:
                    allocation = await self.claims.get(ref)
                check_allocation(ref, allocation)
                return wanted_devices(allocation, self.driver)
            except NodeAgentError as exc:
                return exc

        async with asyncio.TaskGroup() as group:
            tasks = {ref.uid: group.create_task(fetch(ref)) for ref in refs}
        return {uid: task.result() for uid, task in tasks.items()}

    def _failed(self, verb: str, ref: ClaimRef, exc: NodeAgentError) -> ClaimOutcome:
        self.metrics.errors.labels(kind=type(exc).__name__).inc()
        with bound_contextvars(claim_uid=ref.uid):
            log.warning("claim_failed", call=verb, error=_describe(exc), kind=type(exc).__name__)
        return ClaimOutcome(error=_describe(exc))

    async def _batched(
        self,
        queue: list[tuple[list[Item], asyncio.Future[dict[str, R]]]],
        items: list[Item],
        run: Callable[[list[Item]], Awaitable[dict[str, R]]],
        uid: Callable[[Item], str],
    ) -> dict[str, R]:
        """Group commit: calls that arrive while the state lock is held are served together.

        The first waiter to get the lock takes every queued call and runs them
        as one batch with one checkpoint write (one fsync) for all; the others
        find their answer ready when their turn comes. kubelet prepares each
        pod's claims in a call of their own, so 20 pods starting at once are
        20 calls: they share a few checkpoint writes instead of queueing
        behind 20.
        """
        mine: asyncio.Future[dict[str, R]] = asyncio.get_running_loop().create_future()
        queue.append((items, mine))
        async with self.lock.held():
            if not mine.done():
                batch = list(queue)
                queue.clear()
                try:
                    results = await run([item for entry, _ in batch for item in entry])
                except BaseException as exc:
                    for _, future in batch:
                        if future is not mine and not future.done():
                            future.set_exception(exc)
                    raise
                for entry, future in batch:
                    if not future.done():
                        future.set_result({uid(item): results[uid(item)] for item in entry})
        return await mine

    async def _prepare_locked(self, items: list[Ready]) -> dict[str, ClaimOutcome]:
        """Prepare a batch under the state lock: devices and specs per claim, then one checkpoint write."""
        outcomes: dict[str, ClaimOutcome] = {}
        try:
            checkpoint = await self.store.load()
        except NodeAgentError as exc:
            return {ref.uid: self._failed("prepare", ref, exc) for ref, _ in items}
        # The sysfs, CDI and checkpoint work of the whole batch runs in one worker-thread hop.
        checkpoint, committed = await asyncio.to_thread(self._prepare_commit_sync, checkpoint, items, outcomes)
        if committed:
            for prepared in committed:
                with bound_contextvars(claim_uid=prepared.ref.uid):
                    log.info("claim_prepared", devices=list(prepared.device_names), cdi_spec=prepared.cdi_spec)
            self.metrics.prepared_claims.set(len(checkpoint.claims))
        return outcomes

    def _prepare_commit_sync(
        self, checkpoint: Checkpoint, items: list[Ready], outcomes: dict[str, ClaimOutcome]
    ) -> tuple[Checkpoint, list[PreparedClaim]]:
        """The batch's devices and specs, then its checkpoint write (in a worker thread).

        Returns the checkpoint and the claims it newly records. If the write
        fails, everything the batch did is rolled back and its claims fail.
        """
        checkpoint, fresh = self._prepare_batch_sync(checkpoint, items, outcomes)
        if not fresh:
            return checkpoint, []
        try:
            self.store.save_sync(checkpoint)
        except BaseException as exc:
            self._roll_back_all_sync(fresh)
            if not isinstance(exc, NodeAgentError):
                raise
            for prepared, _ in fresh:
                outcomes[prepared.ref.uid] = self._failed("prepare", prepared.ref, exc)
            return checkpoint, []
        self.faults.hit("prepare:after_checkpoint")
        return checkpoint, [prepared for prepared, _ in fresh]

    def _prepare_batch_sync(
        self, checkpoint: Checkpoint, items: list[Ready], outcomes: dict[str, ClaimOutcome]
    ) -> tuple[Checkpoint, list[tuple[PreparedClaim, list[str]]]]:
        """Devices and spec of each claim in turn (in a worker thread); fills ``outcomes``.

        Returns the checkpoint with every claim prepared and the claims this
        batch prepared with the devices it marked. Anything but a claim error
        rolls back the whole batch, as none of it is in the checkpoint yet.
        """
        fresh: list[tuple[PreparedClaim, list[str]]] = []
        try:
            for ref, wanted in items:
                with bound_contextvars(claim_uid=ref.uid):
                    try:
                        checkpoint, prepared, marked = self._prepare_one(checkpoint, ref, wanted)
                    except NodeAgentError as exc:
                        outcomes[ref.uid] = self._failed("prepare", ref, exc)
                        continue
                    outcomes[ref.uid] = ClaimOutcome(devices=prepared.devices)
                    if marked is not None:
                        fresh.append((prepared, marked))
        except BaseException:
            self._roll_back_all_sync(fresh)
            raise
        return checkpoint, fresh

    def _roll_back_all_sync(self, fresh: list[tuple[PreparedClaim, list[str]]]) -> None:
        for prepared, marked in fresh:
            self._roll_back(marked, prepared.cdi_spec)

    def _prepare_one(
        self, checkpoint: Checkpoint, ref: ClaimRef, wanted: tuple[WantedDevice, ...]
    ) -> tuple[Checkpoint, PreparedClaim, list[str] | None]:
        """Mark the devices and write the spec; the caller writes the checkpoint.

        Returns the checkpoint with the claim, the claim, and the devices this
        call marked (None: the claim was prepared already).
        """
        existing = checkpoint.get(ref.uid)
        if existing is not None:
            log.info("claim_already_prepared", devices=list(existing.device_names))
            return checkpoint, existing, None
        for want in wanted:
            holder = checkpoint.holder_of(want.device)
            if holder is not None and not want.admin_access:
                raise DeviceUnavailableError(f"device {want.device} is already prepared for claim {holder}")
        sources: list[DeviceSource] = []
        for want, source in zip(wanted, [self.host.read_sync(w.device) for w in wanted], strict=True):
            check_pool(want.device, want.pool, pool_name(self.node, source.device.numa_node))
            if want.admin_access:
                # DRAAdminAccess: the scheduler hands in-use devices to monitoring claims on
                # purpose. No exclusivity, and the ALLOCATED bit stays the owner's.
                sources.append(replace(source, admin_access=True))
                continue
            if source.device.allocated:
                # We hold the flock that every prepare of every instance holds from its status
                # write to its checkpoint write, and no checkpointed claim holds the device: the
                # bit is left over from an instance killed in between (a maxSurge rolling update)
                # or a failed rollback. Reclaiming it here, not only at start-up, keeps the device
                # usable while the surviving instance serves.
                log.warning("stray_allocation_reclaimed", device=want.device)
            sources.append(source)
        marked: list[str] = []
        spec: str | None = None
        try:
            self.host.mark_allocated_sync(
                [source.device.name for source in sources if not source.admin_access],
                marked,
                lambda: self.faults.hit("prepare:after_first_device"),
            )
            self.faults.hit("prepare:after_sysfs")
            spec = self.host.write_spec_sync(ref.uid, sources)
            self.faults.hit("prepare:after_cdi")
            prepared = PreparedClaim(
                ref=ref,
                cdi_spec=spec,
                devices=tuple(
                    PreparedDevice(
                        pool=want.pool,
                        device=want.device,
                        request_names=want.request_names,
                        cdi_device_ids=(cdi_device_id(ref.uid, want.device),),
                        admin_access=want.admin_access,
                    )
                    for want in wanted
                ),
            )
        except BaseException:
            self._roll_back(marked, spec)
            raise
        return checkpoint.with_claim(prepared), prepared, marked

    def _roll_back(self, marked: list[str], spec: str | None) -> None:
        for name in marked:
            try:
                self.host.set_allocated_sync(name, False)
            except NodeAgentError as exc:  # reconciliation at the next start repairs it
                log.error("rollback_failed", device=name, error=str(exc))
        if spec is not None:
            self.host.delete_spec_sync(spec)
        log.warning("prepare_rolled_back", devices=marked, cdi_spec=spec)

    # --- unprepare -----------------------------------------------------------

    async def unprepare(self, refs: Sequence[ClaimRef]) -> dict[str, str]:
        """claim UID → error ("" on success) for every claim asked for."""
        started = time.monotonic()
        unique = dedupe(refs)
        errors = (
            await self._shielded(
                lambda: self._batched(self._unprepare_queue, list(unique), self._unprepare_locked, _ref_uid)
            )
            if unique
            else {}
        )
        elapsed = time.monotonic() - started
        for ref in unique:
            self.metrics.unprepare_duration.observe(elapsed / max(len(unique), 1))
            self.metrics.unprepare_claims.labels(result="error" if errors[ref.uid] else "success").inc()
        return errors

    async def _unprepare_locked(self, refs: list[ClaimRef]) -> dict[str, str]:
        """Unprepare a batch under the state lock: devices and specs per claim, then one checkpoint write."""
        errors: dict[str, str] = {}
        try:
            checkpoint = await self.store.load()
        except NodeAgentError as exc:
            return {ref.uid: self._failed("unprepare", ref, exc).error for ref in refs}
        # The sysfs, CDI and checkpoint work of the whole batch runs in one worker-thread hop.
        checkpoint, committed = await asyncio.to_thread(self._unprepare_commit_sync, checkpoint, refs, errors)
        if committed:
            for claim in committed:
                with bound_contextvars(claim_uid=claim.ref.uid):
                    log.info("claim_unprepared", devices=list(claim.device_names))
            self.metrics.prepared_claims.set(len(checkpoint.claims))
        return errors

    def _unprepare_commit_sync(
        self, checkpoint: Checkpoint, refs: list[ClaimRef], errors: dict[str, str]
    ) -> tuple[Checkpoint, list[PreparedClaim]]:
        """The batch's devices and specs, then its checkpoint write (in a worker thread).

        If the write fails the devices are free and the specs gone, but the
        claims stay in the checkpoint, so kubelet's repeated call (or
        reconciliation at start) finishes the job; those claims fail.
        """
        checkpoint, fresh = self._unprepare_batch_sync(checkpoint, refs, errors)
        if not fresh:
            return checkpoint, []
        try:
            self.store.save_sync(checkpoint)
        except NodeAgentError as exc:
            for claim in fresh:
                errors[claim.ref.uid] = self._failed("unprepare", claim.ref, exc).error
            return checkpoint, []
        self.faults.hit("unprepare:after_checkpoint")
        return checkpoint, fresh

    def _unprepare_batch_sync(
        self, checkpoint: Checkpoint, refs: list[ClaimRef], errors: dict[str, str]
    ) -> tuple[Checkpoint, list[PreparedClaim]]:
        """Devices and spec of each claim in turn (in a worker thread); fills ``errors``."""
        fresh: list[PreparedClaim] = []
        for ref in refs:
            with bound_contextvars(claim_uid=ref.uid):
                try:
                    claim = self._unprepare_one(checkpoint, ref)
                except NodeAgentError as exc:
                    errors[ref.uid] = self._failed("unprepare", ref, exc).error
                    continue
                errors[ref.uid] = ""
                if claim is not None:
                    checkpoint = checkpoint.without(ref.uid)
                    fresh.append(claim)
        return checkpoint, fresh

    def _unprepare_one(self, checkpoint: Checkpoint, ref: ClaimRef) -> PreparedClaim | None:
        """Free the devices and delete the spec; the caller writes the checkpoint (None: not prepared)."""
        claim = checkpoint.get(ref.uid)
        if claim is None:
            log.info("claim_not_prepared")
            return None
        # admin-access devices were never marked
        gone = self.host.free_sync(
            claim.exclusive_device_names, lambda: self.faults.hit("unprepare:after_first_device")
        )
        for name in gone:
            log.warning("device_gone", device=name)  # unplugged: nothing left to free
        self.faults.hit("unprepare:after_sysfs")
        self.host.delete_spec_sync(claim.cdi_spec)
        self.faults.hit("unprepare:after_cdi")
        return claim
