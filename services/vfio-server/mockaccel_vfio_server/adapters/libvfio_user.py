"""A thin, typed wrapper around one libvfio-user context (one emulated PCI device).

Why a wrapper: the raw cffi calls report errors as ``-1`` plus ``errno``, hand
callbacks raw pointers, and crash the process if a callback object is garbage
collected while C still holds its pointer. ``VfuContext`` turns failures into
``VfuError`` (an ``OSError`` carrying the library's errno), keeps every
callback alive until the context is destroyed, and turns a Python exception in
a region handler into an I/O error for the guest instead of a crash.

The context is always non-blocking (``LIBVFIO_USER_FLAG_ATTACH_NB``): wait for
``listen_fd`` to be readable, call ``attach()`` until it returns True, then
either ``run()`` on each readiness of ``poll_fd`` or ``serve()`` in a thread of
its own (it waits for messages itself, with the GIL released); on
``VfuDisconnected`` call ``attach()`` again. The poll fd changes at each of
those steps, so fetch it again every time.

libvfio-user is not thread-safe: one thread at a time may call into a context
(``VfuContext`` does not lock; the caller arranges it). The callbacks run in
the thread that called ``attach()``, ``run()``, ``serve()`` or ``close()``.

Typical use::

    binding = load_binding(settings.libvfio_user_prefix, settings.cffi_cache_dir)
    with VfuContext(binding, socket_path) as vfu:
        vfu.pci_init(PciType.EXPRESS)
        vfu.set_id(vendor=0x1DED, device=0x0001)
        vfu.add_express_capability()
        vfu.setup_region(Region.BAR0, 0x1000, on_bar0, read_image=registers)
        vfu.setup_reset(on_reset)
        vfu.setup_intx()
        vfu.setup_irq_state(IrqKind.INTX, on_intx_mask)
        vfu.realize()
        ...  # attach()/run() from the event loop
"""

from __future__ import annotations

import enum
import errno
import logging
import os
import struct
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from mockaccel_common.logging import get_logger
from mockaccel_vfio_server.adapters._vfu_build import Binding, load_binding
from mockaccel_vfio_server.adapters.socket_path import make_private, private_umask

__all__ = [
    "AccessRefused",
    "Binding",
    "IrqKind",
    "IrqStateHandler",
    "LogHandler",
    "PciType",
    "Region",
    "RegionHandler",
    "ResetHandler",
    "ResetReason",
    "ServeEnd",
    "VfuContext",
    "VfuDisconnected",
    "VfuError",
    "load_binding",
]

_log = get_logger(__name__)

RegionHandler = Callable[[int, memoryview, bool], None]
"""``handler(offset, data, is_write)``: fill ``data`` on a read, consume it on a write.

``data`` is only valid during the call. Raise ``AccessRefused`` to fail the
access with its errno after logging it yourself; any other exception is logged
here as ``region_handler_failed`` and fails the access with EINVAL. Either way
the emulator keeps running.
"""

ResetHandler = Callable[["ResetReason"], None]
IrqStateHandler = Callable[[int, int, bool], None]
"""``handler(start, count, masked)``: the client masked or unmasked vectors ``start..start+count-1``."""
LogHandler = Callable[[int, str], None]
"""``handler(logging_level, message)`` for libvfio-user's own log lines."""


class VfuError(OSError):
    """A libvfio-user call failed; ``errno`` is the value the library set."""


class VfuDisconnected(VfuError):
    """The client closed the connection (ENOTCONN): call ``attach()`` again."""


class AccessRefused(Exception):
    """Raised by a region handler to fail one access with ``errno`` (already logged by the handler)."""

    def __init__(self, err: int = errno.EINVAL) -> None:
        super().__init__(os.strerror(err))
        self.errno = err


class PciType(enum.Enum):
    """PCI flavour of the device; Express gives a 4 KiB config space."""

    CONVENTIONAL = "VFU_PCI_TYPE_CONVENTIONAL"
    EXPRESS = "VFU_PCI_TYPE_EXPRESS"


class Region(enum.IntEnum):
    """Region indices of a PCI device (checked against the header at load)."""

    BAR0 = 0
    BAR1 = 1
    BAR2 = 2
    BAR3 = 3
    BAR4 = 4
    BAR5 = 5
    ROM = 6
    CONFIG = 7


class ResetReason(enum.IntEnum):
    """Why libvfio-user asks the device to reset (``vfu_reset_type_t``)."""

    DEVICE = 0
    LOST_CONN = 1
    PCI_FLR = 2


class IrqKind(enum.IntEnum):
    """Interrupt types (``enum vfu_dev_irq_type``)."""

    INTX = 0
    MSI = 1
    MSIX = 2
    ERR = 3
    REQ = 4


class ServeEnd(enum.IntEnum):
    """Why ``serve()`` returned without an error."""

    WOKEN = 0  # the wake fd is readable: the caller has work for the context
    STALLED = -2  # one message took ``stall_after`` or more
    HUNG_UP = -3  # the socket reported an error or hang-up, and no message


_HEADER_NAMES: dict[enum.IntEnum, str] = {
    **{r: f"VFU_PCI_DEV_{r.name}_REGION_IDX" for r in Region if r.name.startswith("BAR")},
    Region.ROM: "VFU_PCI_DEV_ROM_REGION_IDX",
    Region.CONFIG: "VFU_PCI_DEV_CFG_REGION_IDX",
    ResetReason.DEVICE: "VFU_RESET_DEVICE",
    ResetReason.LOST_CONN: "VFU_RESET_LOST_CONN",
    ResetReason.PCI_FLR: "VFU_RESET_PCI_FLR",
    **{k: f"VFU_DEV_{k.name}_IRQ" for k in IrqKind},
    ServeEnd.WOKEN: "MOCKACCEL_WOKEN",
    ServeEnd.STALLED: "MOCKACCEL_STALLED",
    ServeEnd.HUNG_UP: "MOCKACCEL_HUNG_UP",
}

# syslog(3) levels libvfio-user logs with, mapped to logging levels.
_SYSLOG_TO_LOGGING = {0: 50, 1: 50, 2: 50, 3: 40, 4: 30, 5: 20, 6: 20, 7: 10}
_FLR_CAPABLE = 1 << 28  # PCIe Device Capabilities: Function Level Reset capable


def _check_enums(lib: Any) -> None:
    """Fail early if the Python enums disagree with the compiled header."""
    for member, name in _HEADER_NAMES.items():
        if getattr(lib, name) != member.value:
            header_value = getattr(lib, name)
            raise ImportError(f"{type(member).__name__}.{member.name} is {member.value}, header: {header_value}")


def _python_level(syslog_level: int) -> int:
    return _SYSLOG_TO_LOGGING.get(syslog_level, logging.DEBUG)


def _syslog_level(python_level: int) -> int:
    for syslog_level in range(8):
        if _SYSLOG_TO_LOGGING[syslog_level] <= python_level:
            return syslog_level
    return 7


def _default_log(level: int, message: str) -> None:
    _log.log(level, "libvfio_user", message=message)


class VfuContext:
    """Owns one ``vfu_ctx_t``: a vfio-user server for one device on one socket.

    The context creates ``socket_path`` (which must not exist: libvfio-user
    fails with EADDRINUSE) and ``close()`` removes it again.
    """

    def __init__(
        self,
        binding: Binding,
        socket_path: Path,
        *,
        log: LogHandler = _default_log,
        log_level: int = logging.INFO,
    ) -> None:
        _check_enums(binding.lib)
        self._ffi = binding.ffi
        self._lib = binding.lib
        self._socket_path = socket_path
        self._pci_type: PciType | None = None
        self._reset: ResetHandler | None = None
        self._irq_state: dict[int, IrqStateHandler] = {}
        self._log_handler = log
        # C holds raw pointers to these; they must outlive vfu_destroy_ctx.
        self._keepalive: list[Any] = []
        self._handle = self._ffi.new_handle(self)
        # The library's private pointer: our handle, and BAR0's image for the C read path.
        self._private = self._ffi.new("struct mockaccel_private *")
        self._private.owner = self._handle
        with private_umask():  # the socket gives full control of the device: 0600, whatever the umask
            ctx = self._lib.vfu_create_ctx(
                self._lib.VFU_TRANS_SOCK,
                os.fsencode(socket_path),
                self._lib.LIBVFIO_USER_FLAG_ATTACH_NB,
                self._private,
                self._lib.VFU_DEV_TYPE_PCI,
            )
            err = self._ffi.errno
        if ctx == self._ffi.NULL:
            raise self._error(err, "vfu_create_ctx")
        self._ctx = ctx
        # The listening socket: the poll fd until a client attaches, open until vfu_destroy_ctx.
        self._listen_fd = self._check(self._lib.vfu_get_poll_fd(ctx), "vfu_get_poll_fd")
        make_private(socket_path)
        self._setup_log(log_level)

    # -- lifecycle -----------------------------------------------------------

    def __enter__(self) -> VfuContext:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def socket_path(self) -> Path:
        return self._socket_path

    @property
    def closed(self) -> bool:
        return self._ctx is None

    def close(self) -> None:
        """Destroy the context, then drop the callbacks and remove the socket (idempotent)."""
        if self._ctx is None:
            return
        ctx, self._ctx = self._ctx, None
        self._lib.vfu_destroy_ctx(ctx)  # may still call the reset/log callbacks
        bar0 = self._private.bar0  # keeps its read count; points at nothing we are about to drop
        bar0.serve_reads, bar0.bytes, bar0.size, bar0.fallback = False, self._ffi.NULL, 0, self._ffi.NULL
        self._keepalive.clear()
        self._irq_state.clear()
        self._handle = None
        self._socket_path.unlink(missing_ok=True)

    # -- device description (before realize) ---------------------------------

    def pci_init(self, pci_type: PciType = PciType.EXPRESS, *, revision: int = 0) -> None:
        """Initialise the PCI config space (once per context)."""
        ret = self._lib.vfu_pci_init(
            self._ptr, getattr(self._lib, pci_type.value), self._lib.PCI_HEADER_TYPE_NORMAL, revision
        )
        self._check(ret, "vfu_pci_init")
        self._pci_type = pci_type

    def set_id(self, vendor: int, device: int, subsystem_vendor: int = 0, subsystem: int = 0) -> None:
        self._lib.vfu_pci_set_id(self._ptr, vendor, device, subsystem_vendor, subsystem)

    def set_class(self, base: int, sub: int, prog_if: int = 0) -> None:
        self._lib.vfu_pci_set_class(self._ptr, base, sub, prog_if)

    def config_space(self) -> memoryview:
        """The live config space (256 bytes, or 4096 for Express); valid until ``close()``."""
        if self._pci_type is None:
            raise RuntimeError("pci_init() first")
        size = self._lib.PCI_CFG_SPACE_EXP_SIZE if self._pci_type is PciType.EXPRESS else self._lib.PCI_CFG_SPACE_SIZE
        return memoryview(self._ffi.buffer(self._lib.vfu_pci_get_config_space(self._ptr), size))

    def add_capability(self, data: bytes, *, pos: int = 0, flags: int = 0) -> int:
        """Add a capability (``data`` starts with its header; copied in). Returns its offset."""
        buf = self._ffi.from_buffer(bytearray(data))
        return self._check(self._lib.vfu_pci_add_capability(self._ptr, pos, flags, buf), "vfu_pci_add_capability")

    @property
    def express_capability_size(self) -> int:
        return int(self._lib.VFIO_USER_PCI_CAP_EXP_SIZEOF)

    def add_express_capability(self, *, flr: bool = True) -> int:
        """Add a PCI Express v2 Endpoint capability, which libvfio-user then emulates.

        ``flr`` advertises Function Level Reset, delivered as ``ResetReason.PCI_FLR``.
        """
        size = self._lib.VFIO_USER_PCI_CAP_EXP_SIZEOF
        pxcaps = 2  # capability version 2, device/port type 0 (Express Endpoint)
        pxdcap = _FLR_CAPABLE if flr else 0
        data = struct.pack("<BBHI", self._lib.PCI_CAP_ID_EXP, 0, pxcaps, pxdcap).ljust(size, b"\0")
        return self.add_capability(data)

    def setup_region(
        self,
        region: Region,
        size: int,
        handler: RegionHandler | None,
        *,
        mem: bool = True,
        always_callback: bool = False,
        read_image: memoryview | None = None,
    ) -> None:
        """Declare a BAR (memory BAR unless ``mem=False``: then I/O ports) or other region.

        For ``Region.CONFIG`` the handler sees accesses outside the standard
        header and known capabilities, or all of them with ``always_callback``.

        ``read_image`` (BAR0 only) serves plain reads in C, without calling
        ``handler``: 1, 2, 4 or 8 bytes, naturally aligned, inside the region,
        copied from the image. The image must be ``size`` bytes whose address
        never changes (a view of a buffer that is never resized) and hold the
        region's current contents whenever the guest can read; it is read, never
        written. Every other access, and every read while ``serve_image_reads``
        is off, goes to ``handler`` as usual.
        """
        flags = self._lib.VFU_REGION_FLAG_RW
        if mem:
            flags |= self._lib.VFU_REGION_FLAG_MEM
        if always_callback:
            flags |= self._lib.VFU_REGION_FLAG_ALWAYS_CB
        callback = self._ffi.NULL
        if handler is not None:
            callback = self._region_callback(int(region), size, handler)
            self._keepalive.append(callback)
        if read_image is not None:
            callback = self._image_callback(region, size, callback, read_image)
        ret = self._lib.vfu_setup_region(self._ptr, int(region), size, callback, flags, self._ffi.NULL, 0, -1, 0)
        self._check(ret, "vfu_setup_region")

    def serve_image_reads(self, enabled: bool) -> None:
        """Serve plain reads from the ``read_image`` (on by default) or send every read to the handler."""
        self._private.bar0.serve_reads = enabled

    @property
    def image_reads(self) -> int:
        """How many reads the C path has served (the handler never saw them)."""
        return int(self._private.bar0.reads)

    def setup_reset(self, handler: ResetHandler) -> None:
        """Call ``handler`` on device reset, FLR and lost connection."""
        callback = self._reset_callback()
        self._keepalive.append(callback)
        self._reset = handler
        self._check(self._lib.vfu_setup_device_reset_cb(self._ptr, callback), "vfu_setup_device_reset_cb")

    def setup_irqs(self, kind: IrqKind, count: int) -> None:
        self._check(self._lib.vfu_setup_device_nr_irqs(self._ptr, int(kind), count), "vfu_setup_device_nr_irqs")

    def setup_intx(self) -> None:
        """One legacy INTx line (must precede ``realize()``)."""
        self.setup_irqs(IrqKind.INTX, 1)

    def setup_irq_state(self, kind: IrqKind, handler: IrqStateHandler) -> None:
        """Call ``handler`` when the client masks or unmasks vectors of ``kind``.

        For INTx, QEMU unmasks the line after each end of interrupt (the
        guest's next access to the device): a device whose cause is still
        pending raises INTx again then, which makes INTx level-triggered.
        """
        ffi, lib = self._ffi, self._lib

        def on_state(vfu_ctx: Any, start: int, count: int, mask: bool) -> None:
            owner: VfuContext = ffi.from_handle(lib.mockaccel_owner(vfu_ctx))
            owner._irq_state[int(kind)](start, count, bool(mask))

        callback = ffi.callback("vfu_dev_irq_state_cb_t *", on_state, onerror=_irq_state_failed)
        self._keepalive.append(callback)
        self._irq_state[int(kind)] = handler
        self._check(lib.vfu_setup_irq_state_callback(self._ptr, int(kind), callback), "vfu_setup_irq_state_callback")

    def realize(self) -> None:
        """Freeze the description; required before the first ``attach()``."""
        self._check(self._lib.vfu_realize_ctx(self._ptr), "vfu_realize_ctx")

    # -- serving (from the event loop) ---------------------------------------

    @property
    def listen_fd(self) -> int:
        """The listening socket: the poll fd whenever no client is attached; stable until ``close()``."""
        return self._listen_fd

    @property
    def poll_fd(self) -> int:
        """The fd to wait on; it changes after attach and after a disconnect."""
        return self._check(self._lib.vfu_get_poll_fd(self._ptr), "vfu_get_poll_fd")

    def attach(self) -> bool:
        """Accept a client if one is waiting; False (EAGAIN) if none yet."""
        if self._lib.vfu_attach_ctx(self._ptr) < 0:
            err = self._ffi.errno
            if err in (errno.EAGAIN, errno.EWOULDBLOCK):
                return False
            raise self._error(err, "vfu_attach_ctx")
        return True

    def run(self, max_messages: int | None = None) -> int:
        """Handle the pending client messages; return how many were handled.

        ``vfu_run_ctx`` handles at most one message per call, so this loops
        until no work is left (or ``max_messages``, to bound loop stalls).
        Raises ``VfuDisconnected`` when the client went away, including when
        the library closed the connection but reported success (a reply that
        failed with ECONNRESET). The loop is C (``mockaccel_run``): this is
        called once per guest access.
        """
        ret = self._lib.mockaccel_run(self._ptr, max_messages or 0, self._listen_fd)
        if ret < 0:
            raise self._error(self._ffi.errno, "vfu_run_ctx")
        return int(ret)

    def serve(self, wake_fd: int, *, stall_after: float) -> ServeEnd:
        """Serve the attached client in this thread until it ends or ``wake_fd`` is readable.

        Blocks (the GIL released) in ``poll(2)`` on the connection and
        ``wake_fd``, handling one message per readiness, entirely in C except
        the Python callbacks. The connection must be non-blocking. Returns
        ``ServeEnd.WOKEN`` when ``wake_fd`` is readable (not drained: the
        caller's), ``STALLED`` or ``HUNG_UP`` for a client to end; raises
        ``VfuDisconnected`` when the client went away, ``VfuError`` on any other
        library error. Only one thread may use the context meanwhile.
        """
        stall_ms = max(1, round(stall_after * 1000))
        ret = self._lib.mockaccel_serve(self._ptr, self.poll_fd, wake_fd, self._listen_fd, stall_ms)
        if ret == self._lib.MOCKACCEL_FAILED:
            raise self._error(self._ffi.errno, "vfu_run_ctx")
        return ServeEnd(ret)

    def trigger_irq(self, subindex: int = 0) -> None:
        self._check(self._lib.vfu_irq_trigger(self._ptr, subindex), "vfu_irq_trigger")

    def trigger_intx(self) -> None:
        self.trigger_irq(0)

    # -- internals -----------------------------------------------------------

    @property
    def _ptr(self) -> Any:
        if self._ctx is None:
            raise VfuError(errno.EBADF, "the vfio-user context is closed")
        return self._ctx

    def _check(self, ret: int, call: str) -> int:
        """Raise on -1; read errno first, before any other C call can change it."""
        if ret < 0:
            raise self._error(self._ffi.errno, call)
        return ret

    @staticmethod
    def _error(err: int, call: str) -> VfuError:
        cls = VfuDisconnected if err == errno.ENOTCONN else VfuError
        return cls(err, f"{call}: {os.strerror(err)}")

    def _setup_log(self, level: int) -> None:
        ffi, lib = self._ffi, self._lib

        def on_log(vfu_ctx: Any, syslog_level: int, msg: Any) -> None:
            owner: VfuContext = ffi.from_handle(lib.mockaccel_owner(vfu_ctx))
            owner._log_handler(_python_level(syslog_level), ffi.string(msg).decode(errors="replace"))

        callback = ffi.callback("vfu_log_fn_t *", on_log, onerror=_log_failed)
        self._keepalive.append(callback)
        self._check(lib.vfu_setup_log(self._ptr, callback, _syslog_level(level)), "vfu_setup_log")

    def _reset_callback(self) -> Any:
        ffi, lib = self._ffi, self._lib

        def on_reset(vfu_ctx: Any, reason: int) -> int:
            owner: VfuContext = ffi.from_handle(lib.mockaccel_owner(vfu_ctx))
            if owner._reset is not None:
                owner._reset(ResetReason(reason))
            return 0

        return ffi.callback("vfu_reset_cb_t *", on_reset, error=-1, onerror=self._callback_failed)

    def _image_callback(self, region: Region, size: int, fallback: Any, image: memoryview) -> Any:
        """Point the C read path at ``image``; return the C callback that tries it first."""
        if region is not Region.BAR0:
            raise ValueError(f"a read image is supported for BAR0 only, not {region.name}")
        if fallback == self._ffi.NULL:
            raise ValueError("a read image needs a handler for the accesses it does not serve")
        if image.nbytes != size:
            raise ValueError(f"the read image has {image.nbytes} bytes, the region {size}")
        pinned = self._ffi.from_buffer("unsigned char[]", image)  # holds the buffer: it cannot be resized
        self._keepalive.append(pinned)
        bar0 = self._private.bar0
        bar0.bytes = pinned
        bar0.size = size
        bar0.fallback = fallback
        bar0.serve_reads = True
        return self._ffi.addressof(self._lib, "mockaccel_bar0_access")

    def _region_callback(self, index: int, size: int, handler: RegionHandler) -> Any:
        """One C callback per region: the C signature does not say which region it is.

        This is the hot path (one call per guest access), so the closure holds
        the region's size and handler itself rather than finding them through
        ``vfu_get_private`` and a dict on every call. It cannot outlive the
        context: ``close()`` drops it after ``vfu_destroy_ctx``.
        """
        buffer = self._ffi.buffer

        def access(vfu_ctx: Any, buf: Any, count: int, offset: int, is_write: bool) -> int:
            if offset < 0 or count > size or offset > size - count:
                _log.warning("guest_error", region=index, offset=offset, width=count, reason="outside the region")
                raise AccessRefused(errno.EINVAL)
            with memoryview(buffer(buf, count)) as data:  # released after the call
                handler(offset, data, bool(is_write))
            return count

        return self._ffi.callback("vfu_region_access_cb_t *", access, error=-1, onerror=self._callback_failed)

    def _callback_failed(self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType) -> int:
        """A handler raised: fail the access (EINVAL unless it said otherwise) instead of crashing.

        cffi hands ``ffi.errno`` back to C when the callback returns, so the
        library replies to the client with that errno instead of a success.
        ``AccessRefused`` was logged by the handler; anything else is a bug in
        the handler and is logged here with its traceback.
        """
        if isinstance(exc, AccessRefused):
            self._ffi.errno = exc.errno
            return -1
        _log.error("region_handler_failed", error=repr(exc), exc_info=(exc_type, exc, tb))
        self._ffi.errno = errno.EINVAL
        return -1


def _irq_state_failed(exc_type: type[BaseException], exc: BaseException, tb: TracebackType) -> None:
    # A void C callback: the library has already accepted the client's request.
    _log.error("irq_state_handler_failed", error=repr(exc), exc_info=(exc_type, exc, tb))


def _log_failed(exc_type: type[BaseException], exc: BaseException, tb: TracebackType) -> None:
    # Nowhere to propagate from a void C callback; losing one log line is the safe outcome.
    _log.error("vfu_log_callback_failed", exc_info=(exc_type, exc, tb))
