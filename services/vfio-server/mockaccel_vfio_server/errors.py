"""The error tree of the vfio-server.

    MockaccelError                      (mockaccel_common.errors)
    ├── InvalidInputError
    │   ├── SettingsError               a flag or env var that cannot be used (exit 2)
    │   └── WordlistError               the wordlist file is missing or malformed (mockaccel_common)
    └── VfioServerError
        ├── GuestError                  an access the device refuses: the guest sees EINVAL
        ├── ControlRequestError         a control API request that cannot be served
        └── SocketInUseError            a live server already listens on the socket path

Names say what the caller does next: a GuestError is logged and answered with
EINVAL (the emulator keeps running), a ControlRequestError becomes an
``{"ok": false}`` reply, the others stop the process at start-up. Library
errors (OSError, VfuError) are translated where they happen, with ``raise ...
from``; none of these classes subclasses a library error.
"""

from __future__ import annotations

from mockaccel_common.errors import InvalidInputError, MockaccelError, WordlistError

__all__ = [
    "ControlRequestError",
    "GuestError",
    "InvalidInputError",
    "SocketInUseError",
    "VfioServerError",
    "WordlistError",
]


class VfioServerError(MockaccelError):
    """Base of the vfio-server's own errors."""


class GuestError(VfioServerError):
    """A guest access the device refuses (out of range, misaligned, read-only, bad value).

    Carries the access so the adapter can log it with offset, width and value.
    """

    def __init__(self, reason: str, *, offset: int, width: int, value: int | None = None) -> None:
        shown = f", value {value:#x}" if value is not None else ""
        super().__init__(f"{reason} (offset {offset:#x}, width {width}{shown})")
        self.reason = reason
        self.offset = offset
        self.width = width
        self.value = value


class ControlRequestError(VfioServerError):
    """A control API request that is malformed or names something that does not exist."""


class SocketInUseError(VfioServerError):
    """Another live process accepts connections on the socket path."""
