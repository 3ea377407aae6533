"""Serve the device on its vfio-user socket from the asyncio loop, one client after another.

No client can crash or stall this loop. How, given what libvfio-user does:

- **The loop never watches an fd the library may close.** libvfio-user closes
  the connection fd itself when a client goes away, and its poll fd changes
  (listening socket, connection, listening socket again). uvloop aborts the
  process (SIGABRT in libuv's epoll bookkeeping) if a watched fd is closed
  behind its back, and libuv keys that bookkeeping by fd number. So the loop
  watches only the listening socket, and only while *awaiting* a client
  (``_readable``); the library closes it only in ``vfu_destroy_ctx``. An
  attached connection is polled by the serving thread (below), with
  ``poll(2)`` and only between two ``vfu_run_ctx`` calls, so a connection the
  library closed is never polled again. No fd number is ever compared with an
  earlier one: state changes are known from return values.
- **Attach runs in a worker thread with a deadline.** ``vfu_attach_ctx`` with
  ATTACH_NB accepts without blocking but then reads the VERSION negotiation
  with blocking calls: a silent client would hold the loop. The one worker
  thread is the only user of the context while it runs (no client is attached,
  so nothing else calls the library). At the deadline, or on shutdown, the
  half-open connection is shut down (``shutdown(2)``, never ``close``: the fd is
  the library's), which ends the blocked read; the thread is always awaited.
- **An attached client is served by a thread of its own.** Waiting for a
  message and handling it is C (``VfuContext.serve``: ``poll(2)`` then
  ``vfu_run_ctx``), called from the worker thread with the GIL released, so a
  plain BAR0 read (served from ``Device.register_image`` in C) runs no Python
  and wakes no event loop, and the loop never waits on the library. The
  loop awaits the thread's end. libvfio-user is not thread-safe, so the
  context has one user at a time, always the worker while a client is attached
  (attach, serve, end the client) and the loop otherwise (describe, close).
  The loop reaches the context in between only through the thread: it writes
  an eventfd the thread polls along with the connection. That is how it asks
  for an interrupt (``_trigger``: a control-API change raised the line) and
  how it stops the thread (cancellation: the thread returns between two
  messages; the client stays attached until ``vfu_destroy_ctx``). No fd of the
  library's is closed or shut down to stop it, and the eventfd, which is
  ours, is closed only after the thread has returned. The thread blocks only
  in ``poll(2)`` (the connection is non-blocking) and in the ``slow`` fault's
  sleep (capped below 5 s), so stopping takes at most that long.
- **One lock guards the device.** The Python callbacks (BAR0 writes and
  refused reads, reset, INTx mask state) run in the serving thread, the
  control API in the loop; both change ``Device``, ``Faults`` and the IRQ
  state here. So every callback runs under ``_lock`` and so does every control
  request (``guarded``), and nothing blocking is done under it: the ``slow``
  fault sleeps before taking it, and no call into the library that can call
  back (reset) is made while holding it. The loop waits at most for one
  callback's Python. The C read path reads the register image without the
  lock: a read concurrent with a control-API change (health) sees each byte
  before or after it, as with a real device whose state changes under a read.
  The config-space callback (``ConfigSpace.access``, MSI capability writes)
  does not take it either: the loop only reads the MSI enable bit, one byte.
- **Every client error ends only that client.** Any ``vfu_run_ctx`` error
  other than ENOTCONN (a lost connection, already handled by the library)
  shuts the connection down and drains it, so the library's next read sees
  end-of-file, detaches and resets the device. The connection is made
  non-blocking when the client is attached, so a body that never comes, or a
  client that never reads its replies, costs an EAGAIN error reply rather than
  a wait. The connection also gets receive and send timeouts, and a message
  that still took ``io_timeout`` longer than the longest injected ``slow``
  delay ends the client (the delay is the device's, and the guest is meant to
  wait for it: counting it would drop the client of a fault test that asks
  for a delay above ``io_timeout``). Errors of the listening
  socket that say "no fds left" (EMFILE…) back off instead of spinning; only
  errors that mean the listening socket itself is broken stop the process.

The thread handles one message per readiness of the connection: QEMU waits
for the reply to each access, so after a message there is almost never another
one queued, and asking the library for it would cost a receive that fails with
EAGAIN on every access. Plain BAR0 reads do not reach Python at all, except
while a fault that concerns reads is injected (``_sync_image_reads``).
``_on_bar0`` sees the writes and the reads the device refuses, and logs them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from mockaccel_common.logging import get_logger
from mockaccel_vfio_server.adapters.libvfio_user import (
    AccessRefused,
    ResetReason,
    ServeEnd,
    VfuContext,
    VfuDisconnected,
    VfuError,
)
from mockaccel_vfio_server.adapters.pci_function import ConfigSpace, describe_pf
from mockaccel_vfio_server.domain.device import Device
from mockaccel_vfio_server.domain.faults import MAX_SLOW_MS, Faults
from mockaccel_vfio_server.errors import GuestError

log = get_logger("mockaccel_vfio_server.server")

# errnos of vfu_attach_ctx that mean the listening socket itself is broken. Anything else
# (EINVAL, EFAULT for fds sent with VERSION, EPROTO...) concerns one client that spoke garbage during negotiation.
_FATAL_ATTACH_ERRNOS = {errno.EBADF, errno.ENOTSOCK, errno.EOPNOTSUPP}
# errnos of accept() that mean "out of resources for now": back off, the client waits in the backlog.
_BACKOFF_ATTACH_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_BACKOFF_MIN_S = 0.05
_BACKOFF_MAX_S = 1.0
_END_CLIENT_ATTEMPTS = 16
_DRAIN_LIMIT = 1 << 22


@dataclass(frozen=True)
class Limits:
    """Per-client bounds (seconds): VERSION negotiation, and one message (or blocking read or write)."""

    negotiation_timeout: float = 2.0
    io_timeout: float = 1.0


class VfioServer:
    """Bridges a ``Device`` and ``Faults`` to one ``VfuContext`` and serves it."""

    def __init__(
        self, vfu: VfuContext, device: Device, faults: Faults, *, limits: Limits | None = None, intx: bool = True
    ) -> None:
        self._vfu = vfu
        self._intx = intx
        self._device = device
        self._faults = faults
        self._limits = limits or Limits()
        self._attached = False
        self._ready_logged = False
        self._irq_line = False
        self._intx_masked = False
        self._irqs_triggered = 0
        self._config: ConfigSpace | None = None
        self._clients = 0
        self._clients_ended = 0
        self._guest_reads = 0
        self._guest_writes = 0
        self._listen_fd = -1
        # Guards the device, the faults and the state below (see the module docstring).
        self._lock = threading.Lock()
        self._ctx_thread: int | None = None  # the thread serving the attached client
        self._wake_fd = -1  # the serving thread's eventfd, while it runs
        self._pending_irqs: list[str] = []  # interrupts the loop asked the serving thread for
        self._stopping = False
        # A message taking longer than this ends its client: the I/O timeout on top of the
        # longest injected delay, which the guest is meant to wait for (see the module docstring).
        self._stall_after = self._limits.io_timeout + MAX_SLOW_MS / 1000

    def describe(self) -> None:
        """Declare the PCI function and realize the context (before ``serve``)."""
        self._config = describe_pf(
            self._vfu,
            self._on_bar0,
            self._on_reset,
            self._on_intx_state,
            bar0_image=self._device.register_image,
            intx=self._intx,
        )
        self._sync_image_reads()

    def state(self) -> dict[str, Any]:
        return {
            "client_attached": self._attached,
            "clients_served": self._clients,
            "clients_ended": self._clients_ended,
            "guest_reads": self._guest_reads + self._vfu.image_reads,
            "guest_reads_from_image": self._vfu.image_reads,  # served in C, without calling _on_bar0
            "guest_writes": self._guest_writes,
            "irqs_triggered": self._irqs_triggered,
            "msi_enabled": self._config is not None and self._config.msi_enabled(),
            "faults": self._faults.as_dict(),
        }

    async def serve(self) -> None:
        """Serve clients one after another until cancelled; raises if the listening socket breaks."""
        self._listen_fd = self._vfu.listen_fd  # stable: the library closes it only in vfu_destroy_ctx
        log.info("server_listening", poll_fd=self._listen_fd)
        # One thread: it negotiates with and then serves each client, so it is the
        # context's only user while a client is attached, and never waits behind other work.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="vfu-client") as worker:
            backoff = _BACKOFF_MIN_S
            while True:
                await self._readable(self._listen_fd)
                try:
                    attached = await self._attach(worker)
                except VfuError as exc:
                    if exc.errno not in _BACKOFF_ATTACH_ERRNOS:
                        raise
                    log.warning("accept_failed", error=exc.strerror, errno=exc.errno, retry_in_s=backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, _BACKOFF_MAX_S)
                    continue
                backoff = _BACKOFF_MIN_S
                if attached:
                    try:
                        await self._serve_client(worker)
                    finally:
                        with self._lock:
                            self._attached = False
                            self._irq_line = False
                            self._intx_masked = False
                            self._pending_irqs.clear()

    # -- device changes made outside a guest access (control API) -----------

    def guarded(self, handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``handler`` (the control API's) run under the device lock, as the guest's callbacks are."""

        def locked(request: Any) -> Any:
            with self._lock:
                return handler(request)

        return locked

    def device_changed(self) -> None:
        """After a change the guest did not make (control API, under ``guarded``): re-evaluate INTx and reads."""
        self._sync_image_reads()
        self._update_irq()

    def _sync_image_reads(self) -> None:
        """Reads bypass ``_on_bar0`` only while no injected fault concerns them."""
        self._vfu.serve_image_reads(not (self._faults.fail_reads or self._faults.slow_ms))

    # -- the loop side -------------------------------------------------------

    async def _readable(self, fd: int) -> None:
        """Wait until ``fd`` is readable; the reader exists only during this await."""
        loop = asyncio.get_running_loop()
        ready = loop.create_future()

        def on_ready() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, on_ready)
        try:
            await ready
        finally:
            loop.remove_reader(fd)

    async def _attach(self, worker: concurrent.futures.Executor) -> bool:
        """Accept and negotiate in ``worker``, bounded by the negotiation deadline."""
        loop = asyncio.get_running_loop()
        pending = loop.run_in_executor(worker, self._vfu.attach)
        try:
            async with asyncio.timeout(self._limits.negotiation_timeout):
                accepted = await asyncio.shield(pending)
        except TimeoutError:
            self._abort_negotiation()
            try:
                await pending
            except VfuError as exc:
                log.warning("client_negotiation_timeout", error=exc.strerror, errno=exc.errno)
                return False
            accepted = True  # negotiated just as the deadline passed: serve it
        except asyncio.CancelledError:
            self._abort_negotiation()
            with contextlib.suppress(VfuError):
                await pending
            raise
        except VfuError as exc:
            if exc.errno in _FATAL_ATTACH_ERRNOS or exc.errno in _BACKOFF_ATTACH_ERRNOS:
                raise
            log.warning("client_negotiation_failed", error=exc.strerror, errno=exc.errno)
            return False
        if not accepted:
            return False  # EAGAIN: the connection went away before we accepted it
        self._attached = True
        self._clients += 1
        log.info("client_attached", client=self._clients)
        if not self._ready_logged:
            self._ready_logged = True
            log.info("server_ready")
        self._on_connection(self._set_io_timeouts)
        return True

    async def _serve_client(self, worker: concurrent.futures.Executor) -> None:
        """Serve the attached client in ``worker`` until it leaves or is ended; on cancellation, stop it first.

        The thread is always awaited before this returns, so the context has a
        single user and the eventfd is closed after its last use.
        """
        os.set_blocking(self._vfu.poll_fd, False)  # the fd is the library's, but its flags are ours to set
        loop = asyncio.get_running_loop()
        wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        try:
            with self._lock:
                self._wake_fd = wake
                self._stopping = False
            done = loop.run_in_executor(worker, self._serve_in_thread, wake)
            try:
                await asyncio.shield(done)
            except asyncio.CancelledError:
                with self._lock:
                    self._stopping = True
                    os.eventfd_write(wake, 1)
                await _join(done)
                raise
        finally:
            with self._lock:
                self._wake_fd = -1
            os.close(wake)

    def _serve_in_thread(self, wake: int) -> None:
        """The worker's side: serve until the client is gone or ended, or the loop says stop."""
        with self._lock:
            self._ctx_thread = threading.get_ident()
        try:
            while True:
                with self._lock:
                    pending, self._pending_irqs = self._pending_irqs, []
                    for reason in pending:
                        self._deliver(reason)
                try:
                    end = self._vfu.serve(wake, stall_after=self._stall_after)
                except VfuDisconnected:
                    log.info("client_detached", client=self._clients)
                    return
                except VfuError as exc:
                    self._end_client("error", error=exc.strerror, errno=exc.errno)
                    return
                if end is ServeEnd.STALLED:
                    self._end_client("stalled", took_over_s=self._stall_after)
                    return
                if end is ServeEnd.HUNG_UP:
                    self._end_client("hung up")
                    return
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(wake)
                if self._stopping:
                    return
        finally:
            with self._lock:
                self._ctx_thread = None

    def _end_client(self, reason: str, **details: Any) -> None:
        """End the attached client: shut its connection down, drain it, let the library detach.

        Runs in the serving thread, without the lock (the library calls reset on detach).
        """
        self._clients_ended += 1
        log.warning("client_ended", client=self._clients, reason=reason, **details)
        self._on_connection(_shutdown_and_drain)
        for _ in range(_END_CLIENT_ATTEMPTS):
            try:
                self._vfu.run(max_messages=1)
            except VfuDisconnected:
                log.info("client_detached", client=self._clients)
                return
            except VfuError:
                continue  # a message still queued before the end of input; the next read sees EOF
        raise VfuError(errno.EIO, "libvfio-user did not detach a client whose connection was shut down")

    def _on_connection(self, action: Any) -> None:
        """Run ``action(sock)`` on a duplicate of the attached connection (the library keeps its fd)."""
        fd = self._vfu.poll_fd
        if fd == self._listen_fd:
            return  # already detached
        with socket.socket(fileno=os.dup(fd)) as sock:
            action(sock)

    def _abort_negotiation(self) -> None:
        """Shut down the connection the worker thread negotiates on, so its blocking read returns.

        Called while the worker may be inside ``vfu_attach_ctx``: reading the
        poll fd is a plain field read. The fd may have been closed (and its
        number reused) in between, so the duplicate is checked to be a
        connection accepted on our listening socket before it is shut down.
        """
        fd = self._vfu.poll_fd
        if fd < 0 or fd == self._listen_fd:
            return
        try:
            dup = os.dup(fd)
        except OSError:
            return
        with socket.socket(fileno=dup) as sock:
            try:
                ours = (
                    sock.family == socket.AF_UNIX
                    and not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                    and sock.getsockname() == os.fsdecode(self._vfu.socket_path)
                )
            except OSError:
                ours = False
            if ours:
                log.warning("client_negotiation_aborted", deadline_s=self._limits.negotiation_timeout)
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _set_io_timeouts(self, sock: socket.socket) -> None:
        seconds = int(self._limits.io_timeout)
        micros = int((self._limits.io_timeout - seconds) * 1_000_000)
        timeval = struct.pack("@ll", seconds, micros)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)

    # -- libvfio-user callbacks (in the serving thread, under the lock) ------

    def _on_bar0(self, offset: int, data: memoryview, is_write: bool) -> None:
        slow_ms = self._faults.slow_ms
        if slow_ms:
            time.sleep(slow_ms / 1000)  # the injected "slow hardware" fault (capped < QEMU's 5 s), outside the lock
        with self._lock:
            self._on_bar0_locked(offset, data, is_write)

    def _on_bar0_locked(self, offset: int, data: memoryview, is_write: bool) -> None:
        faults = self._faults
        if is_write:
            self._guest_writes += 1
        else:
            self._guest_reads += 1
        if not is_write:  # a refused read, or any read while a fault is injected
            if faults.fail_reads:
                log.debug("guest_access_failed_by_fault", offset=offset, width=len(data), is_write=False)
                raise AccessRefused(errno.EINVAL)
            try:
                self._device.read_into(offset, data)
            except GuestError as exc:
                _refuse(exc, offset=offset, width=len(data), value=None, is_write=False)
            return
        width = len(data)
        value = int.from_bytes(data, "little")
        if faults.fail_writes:
            log.debug("guest_access_failed_by_fault", offset=offset, width=width, is_write=True)
            raise AccessRefused(errno.EINVAL)
        try:
            self._device.write(offset, width, value)
        except GuestError as exc:
            _refuse(exc, offset=offset, width=width, value=value, is_write=True)
        self._update_irq()

    def _on_reset(self, reason: ResetReason) -> None:
        with self._lock:
            self._device.reset()
            self._irq_line = self._device.irq_line
            self._intx_masked = False
        log.info("device_reset", reason=reason.name.lower())

    def _on_intx_state(self, start: int, count: int, masked: bool) -> None:
        """The client masked or unmasked INTx: an unmasked line that is still asserted fires again.

        That is level-triggered INTx: QEMU unmasks after each end of interrupt,
        so a cause the driver has not cleared yet (a failed read in its handler)
        raises the interrupt again instead of being lost for good.
        """
        with self._lock:
            self._intx_masked = masked
            if not masked and self._device.irq_line:
                self._trigger("intx_unmasked")

    def _update_irq(self) -> None:
        """Interrupt when the line rises (an enabled cause became pending), unless INTx is masked.

        With MSI (edge-triggered) the rising edge is the only trigger; the
        driver clears IRQ_STATUS in its handler and in its health poll, so a
        later cause makes a new edge.
        """
        line = self._device.irq_line
        rising = line and not self._irq_line
        self._irq_line = line
        msi = self._config is not None and self._config.msi_enabled()
        if rising and (msi or (self._intx and not self._intx_masked)):  # a masked INTx says nothing about MSI
            self._trigger("cause_pending")

    def _trigger(self, reason: str) -> None:
        """Interrupt the client (lock held): at once in the serving thread, else through it."""
        if not self._attached:
            log.debug("irq_not_delivered", reason="no client attached")
            return
        if self._ctx_thread != threading.get_ident():
            # The loop changed the device while the serving thread may be inside the library.
            self._pending_irqs.append(reason)
            if self._wake_fd >= 0:
                os.eventfd_write(self._wake_fd, 1)
            return
        self._deliver(reason)

    def _deliver(self, reason: str) -> None:
        """Trigger the interrupt: in the serving thread, with the lock held."""
        try:
            self._vfu.trigger_irq(0)
        except VfuError as exc:
            # ENOENT: the client has not set up INTx or MSI yet (guest driver not bound).
            log.info("irq_not_delivered", reason=exc.strerror, errno=exc.errno)
            return
        self._irqs_triggered += 1
        log.info("irq_triggered", cause=reason, msi=self._config is not None and self._config.msi_enabled())


async def _join(done: asyncio.Future[None]) -> None:
    """Await ``done`` even if cancelled again: the thread it stands for must end first."""
    while not done.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(done)
    if not done.cancelled() and (exc := done.exception()) is not None:
        # An error while stopping: the client is torn down with the context anyway.
        log.warning("serving_thread_failed_while_stopping", error=repr(exc))


def _refuse(exc: GuestError, **access: Any) -> NoReturn:
    """A guest access the device rejects: logged, and an error reply instead of a value."""
    log.warning("guest_error", reason=exc.reason, **access)
    raise AccessRefused(errno.EINVAL) from exc


def _shutdown_and_drain(sock: socket.socket) -> None:
    """End input and output; discard what is queued (passed fds are closed by the kernel)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.setblocking(False)
    drained = 0
    while drained < _DRAIN_LIMIT:
        try:
            chunk = sock.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        drained += len(chunk)

