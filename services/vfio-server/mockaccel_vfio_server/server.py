"""Serve the device on its vfio-user socket from the asyncio loop, one client after another.

Why event-driven: blocking ``vfu_run_ctx`` would stall the loop (no signals,
no control API). The context is non-blocking (ATTACH_NB), and the loop watches
its poll fd with ``loop.add_reader``. That fd changes: it is the listening
socket before a client attaches, the connection while one is attached, and the
listening socket again after the client leaves (ENOTCONN). So after every
state change the reader moves to the current fd. One process thereby serves
any number of QEMU runs in a row.

Each readiness runs at most ``burst`` messages and then returns to the loop
(the fd is still readable, so the loop calls back at once): a client that
floods the socket cannot starve signal handling or the control API.

Region callbacks run synchronously inside ``vfu_run_ctx`` on the loop thread;
they are short (a slice copy or a register decode), except for the injected
``slow`` fault, which sleeps there on purpose (capped, see faults.py).
"""

from __future__ import annotations

import asyncio
import errno
import time
from typing import Any

from mockaccel_common.logging import get_logger
from mockaccel_vfio_server.adapters.libvfio_user import (
    AccessRefused,
    ResetReason,
    VfuContext,
    VfuDisconnected,
    VfuError,
)
from mockaccel_vfio_server.adapters.pci_function import describe_pf
from mockaccel_vfio_server.domain.device import Device
from mockaccel_vfio_server.domain.faults import Faults
from mockaccel_vfio_server.errors import GuestError

log = get_logger("mockaccel_vfio_server.server")

DEFAULT_BURST = 64
# errnos of vfu_attach_ctx that mean the listening socket itself is broken.
# Anything else concerns one client (it vanished or spoke garbage during
# negotiation, e.g. another server probing whether this one is alive).
_FATAL_ATTACH_ERRNOS = {errno.EBADF, errno.ENOTSOCK, errno.EFAULT, errno.ENOMEM, errno.EOPNOTSUPP}


class VfioServer:
    """Bridges a ``Device`` and ``Faults`` to one ``VfuContext`` and serves it."""

    def __init__(self, vfu: VfuContext, device: Device, faults: Faults, *, burst: int = DEFAULT_BURST) -> None:
        self._vfu = vfu
        self._device = device
        self._faults = faults
        self._burst = burst
        self._attached = False
        self._ready_logged = False
        self._fd: int | None = None
        self._irq_line = False
        self._clients = 0
        self._guest_reads = 0
        self._guest_writes = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failed: asyncio.Future[None] | None = None

    def describe(self) -> None:
        """Declare the PCI function and realize the context (before ``serve``)."""
        describe_pf(self._vfu, self._on_bar0, self._on_reset)

    def state(self) -> dict[str, Any]:
        return {
            "client_attached": self._attached,
            "clients_served": self._clients,
            "guest_reads": self._guest_reads,
            "guest_writes": self._guest_writes,
            "faults": self._faults.as_dict(),
        }

    async def serve(self) -> None:
        """Serve until cancelled; raises if the context fails beyond one client's connection."""
        self._loop = asyncio.get_running_loop()
        self._failed = self._loop.create_future()
        self._watch()
        log.info("server_listening", poll_fd=self._fd)
        try:
            await self._failed
        finally:
            self._unwatch()

    # -- device changes made outside a guest access (control API) -----------

    def device_changed(self) -> None:
        """Re-evaluate the INTx line after a change the guest did not make."""
        self._update_irq()

    # -- the loop side -------------------------------------------------------

    def _watch(self) -> None:
        """Point the reader at the context's current poll fd."""
        assert self._loop is not None
        fd = self._vfu.poll_fd
        if fd != self._fd:
            self._unwatch()
            self._loop.add_reader(fd, self._on_readable)
            self._fd = fd

    def _unwatch(self) -> None:
        if self._fd is not None and self._loop is not None:
            self._loop.remove_reader(self._fd)
        self._fd = None

    def _on_readable(self) -> None:
        try:
            if not self._attached:
                self._try_attach()
            else:
                self._run_burst()
        except VfuError as exc:
            log.error("vfio_user_failed", error=str(exc), errno=exc.errno)
            self._unwatch()
            if self._failed is not None and not self._failed.done():
                self._failed.set_exception(exc)

    def _try_attach(self) -> None:
        try:
            if not self._vfu.attach():
                return  # EAGAIN: the connection went away before we accepted it
        except VfuError as exc:
            if exc.errno in _FATAL_ATTACH_ERRNOS:
                raise
            log.warning("client_negotiation_failed", error=str(exc), errno=exc.errno)
            self._watch()
            return
        self._attached = True
        self._clients += 1
        log.info("client_attached", client=self._clients)
        if not self._ready_logged:
            self._ready_logged = True
            log.info("server_ready")
        self._watch()
        self._run_burst()  # the client may already have sent its first requests

    def _run_burst(self) -> None:
        try:
            self._vfu.run(max_messages=self._burst)
        except VfuDisconnected:
            self._attached = False
            self._irq_line = False
            log.info("client_detached", client=self._clients)
            self._watch()

    # -- libvfio-user callbacks (synchronous, on the loop thread) -----------

    def _on_bar0(self, offset: int, data: memoryview, is_write: bool) -> None:
        faults = self._faults
        if is_write:
            self._guest_writes += 1
        else:
            self._guest_reads += 1
        if faults.slow_ms:
            time.sleep(faults.slow_ms / 1000)  # the injected "slow hardware" fault, capped < QEMU's 5 s
        width = len(data)
        value = int.from_bytes(data, "little") if is_write else None
        if (faults.fail_writes if is_write else faults.fail_reads):
            log.debug("guest_access_failed_by_fault", offset=offset, width=width, is_write=is_write)
            raise AccessRefused(errno.EINVAL)
        try:
            if is_write:
                assert value is not None
                self._device.write(offset, width, value)
                self._update_irq()
            else:
                self._device.read_into(offset, data)
        except GuestError as exc:
            log.warning(
                "guest_error", offset=offset, width=width, value=value, is_write=is_write, reason=exc.reason
            )
            raise AccessRefused(errno.EINVAL) from exc

    def _on_reset(self, reason: ResetReason) -> None:
        self._device.reset()
        self._irq_line = self._device.irq_line
        log.info("device_reset", reason=reason.name.lower())

    def _update_irq(self) -> None:
        """Trigger INTx when the line rises (an enabled cause became pending)."""
        line = self._device.irq_line
        rising = line and not self._irq_line
        self._irq_line = line
        if not rising:
            return
        if not self._attached:
            log.debug("intx_not_delivered", reason="no client attached")
            return
        try:
            self._vfu.trigger_intx()
            log.info("intx_triggered")
        except VfuError as exc:
            # ENOENT: the client has not set up INTx yet (guest driver not bound).
            log.info("intx_not_delivered", reason=exc.strerror, errno=exc.errno)
