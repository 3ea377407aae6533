"""Serve the device on its vfio-user socket from the asyncio loop, one client after another.

No client can crash or stall this loop. How, given what libvfio-user does:

- **Readiness follows the library's fd lifecycle.** libvfio-user closes the
  connection fd itself when a client goes away, and its poll fd changes
  (listening socket, connection, listening socket again). uvloop aborts the
  process (SIGABRT in libuv's epoll bookkeeping) if a watched fd is closed
  behind its back, and libuv keys that bookkeeping by fd number. So the loop
  never watches an fd the library may close. The listening socket is watched
  only while *awaiting* a client (``_readable``). An attached connection is
  registered in a private epoll instance that this module owns (``_watch``),
  and the loop watches only that epoll fd, for the whole client: no reader is
  added and removed around every message, and when the library closes the
  connection the kernel drops it from our epoll by itself (nothing else holds
  that socket). A persistent reader on the socket itself is not an option:
  when the peer closes with a reply unread the socket reports EPOLLERR, and
  uvloop then runs the reader once and closes its poll handle for good (a
  client left attached with its messages unread; the fuzz suite's stall). An
  epoll fd never reports an error, only "readable". No fd number is ever
  compared with an earlier one: state changes are known from return values.
- **Attach runs in a worker thread with a deadline.** ``vfu_attach_ctx`` with
  ATTACH_NB accepts without blocking but then reads the VERSION negotiation
  with blocking calls: a silent client would hold the loop. The one worker
  thread is the only user of the context while it runs (no client is attached,
  so nothing else calls the library). At the deadline, or on shutdown, the
  half-open connection is shut down (``shutdown(2)``, never ``close``: the fd is
  the library's), which ends the blocked read; the thread is always awaited.
- **Every client error ends only that client.** Any ``vfu_run_ctx`` error
  other than ENOTCONN (a lost connection, already handled by the library)
  shuts the connection down and drains it, so the library's next read sees
  end-of-file, detaches and resets the device. The connection is made
  non-blocking when the client is attached, so a body that never comes, or a
  client that never reads its replies, costs an EAGAIN error reply rather than
  a wait. The connection also gets receive and send timeouts, and a ``vfu_run_ctx``
  call that still took ``io_timeout`` ends the client. Errors of the listening socket that say "no fds left" (EMFILE…)
  back off instead of spinning; only errors that mean the listening socket
  itself is broken stop the process.

Each readiness runs at most ``burst`` messages and then returns to the loop,
so a flooding client cannot starve signal handling or the control API. The
default is one: QEMU waits for the reply to each access, so after a message
there is almost never another one queued, and asking the library for it costs
a receive that fails with EAGAIN on every access; the level-triggered
readiness of the epoll fd already says whether more is waiting.
Region callbacks run synchronously inside ``vfu_run_ctx`` on the loop thread;
they are short, except the injected ``slow`` fault (capped, see faults.py).
Plain BAR0 reads do not reach Python at all: the adapter serves them in C from
the device's register image (``Device.register_image``), except while a fault
that concerns reads is injected (``_sync_image_reads``). ``_on_bar0`` sees the
writes and the reads the device refuses, and logs them as before.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import os
import select
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any, NoReturn

from mockaccel_common.logging import get_logger
from mockaccel_vfio_server.adapters.libvfio_user import (
    AccessRefused,
    ResetReason,
    VfuContext,
    VfuDisconnected,
    VfuError,
)
from mockaccel_vfio_server.adapters.pci_function import ConfigSpace, describe_pf
from mockaccel_vfio_server.domain.device import Device
from mockaccel_vfio_server.domain.faults import Faults
from mockaccel_vfio_server.errors import GuestError

log = get_logger("mockaccel_vfio_server.server")

DEFAULT_BURST = 1  # messages per readiness (see the module docstring)
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
    """Per-client bounds (seconds): VERSION negotiation, and one blocking read or write."""

    negotiation_timeout: float = 2.0
    io_timeout: float = 1.0
    burst: int = DEFAULT_BURST


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
        self._watch: select.epoll | None = None

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
        # One thread, so attach never waits behind other work in the default executor.
        with (
            concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="vfu-attach") as worker,
            select.epoll() as watch,
        ):
            self._watch = watch
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
                        await self._serve_client()
                    finally:
                        self._attached = False
                        self._irq_line = False
                        self._intx_masked = False

    # -- device changes made outside a guest access (control API) -----------

    def device_changed(self) -> None:
        """After a change the guest did not make (control API): re-evaluate INTx and the read path."""
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

    async def _serve_client(self) -> None:
        """Run the attached client's messages until it leaves or is ended.

        The connection is registered in our epoll (level-triggered) and the
        loop watches that epoll fd while the client is attached; the messages
        run in the reader callback itself (no future, no task switch and no
        ``epoll_ctl`` per message). The library may close the connection
        inside that callback: the kernel then removes it from our epoll, and
        the loop's registration (our epoll fd) is unaffected.
        """
        assert self._watch is not None
        watch, conn = self._watch, self._vfu.poll_fd
        os.set_blocking(conn, False)  # the fd is the library's, but its flags are ours to set
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()

        def on_ready() -> None:
            if finished.done():
                return  # the client is gone; the reader goes when the awaiting task resumes
            try:
                if not self._run_messages():
                    finished.set_result(None)
            except Exception as exc:  # handed to the awaiting task, which raises it
                finished.set_exception(exc)

        watch.register(conn, select.EPOLLIN)
        try:
            loop.add_reader(watch.fileno(), on_ready)
            try:
                await finished
            finally:
                loop.remove_reader(watch.fileno())
        finally:
            # Normally already gone (the library closed it: EBADF, or the number is reused: ENOENT);
            # still registered only when we stop while a client is attached.
            with contextlib.suppress(OSError):
                watch.unregister(conn)

    def _run_messages(self) -> bool:
        """Handle the messages of one readiness; False once the client is gone or has been ended."""
        started = time.monotonic()
        try:
            self._vfu.run(max_messages=self._limits.burst)
        except VfuDisconnected:
            log.info("client_detached", client=self._clients)
            return False
        except VfuError as exc:
            self._end_client("error", error=exc.strerror, errno=exc.errno)
            return False
        if time.monotonic() - started >= self._limits.io_timeout:
            self._end_client("stalled the loop", took_s=round(time.monotonic() - started, 3))
            return False
        return True

    def _end_client(self, reason: str, **details: Any) -> None:
        """End the attached client: shut its connection down, drain it, let the library detach."""
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

    # -- libvfio-user callbacks (synchronous, on the loop thread) -----------

    def _on_bar0(self, offset: int, data: memoryview, is_write: bool) -> None:
        faults = self._faults
        if is_write:
            self._guest_writes += 1
        else:
            self._guest_reads += 1
        if faults.slow_ms:
            time.sleep(faults.slow_ms / 1000)  # the injected "slow hardware" fault, capped < QEMU's 5 s
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
        if not self._attached:
            log.debug("irq_not_delivered", reason="no client attached")
            return
        try:
            self._vfu.trigger_irq(0)
        except VfuError as exc:
            # ENOENT: the client has not set up INTx or MSI yet (guest driver not bound).
            log.info("irq_not_delivered", reason=exc.strerror, errno=exc.errno)
            return
        self._irqs_triggered += 1
        log.info("irq_triggered", cause=reason, msi=self._config is not None and self._config.msi_enabled())


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

