"""The error tree of mockaccel_common.

    MockaccelError
    ├── InvalidInputError      bad input from a user or a file: fix it, do not retry
    │   ├── TopologyError      a topology file that cannot describe a node
    │   ├── SettingsError      a setting that cannot be parsed
    │   └── WordlistError      a passphrase wordlist that is missing or malformed
    └── SysfsError             a sysfs attribute that cannot be read or written
        └── DeviceGoneError    the device vanished while it was being read

Library errors (OSError, ValueError, tomllib.TOMLDecodeError) are translated
where they happen, with ``raise ... from``; callers only catch these classes.
"""

from __future__ import annotations


class MockaccelError(Exception):
    """Base of every error raised by mock-accel code."""


class InvalidInputError(MockaccelError):
    """Input that will not become valid by trying again."""


class TopologyError(InvalidInputError):
    """A topology file is malformed; the message names the field."""


class SettingsError(InvalidInputError):
    """A setting (flag or environment variable) cannot be parsed."""


class WordlistError(InvalidInputError):
    """The passphrase wordlist cannot be loaded."""


class SysfsError(MockaccelError):
    """An attribute cannot be read, parsed or written.

    ``errno`` carries the kernel's answer for writes (EINVAL, ERANGE, EBUSY …)
    so callers and the conformance suite can assert on it.
    """

    def __init__(self, message: str, *, path: str = "", errno: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.errno = errno


class DeviceGoneError(SysfsError):
    """The device disappeared between listing and reading it."""
