"""Own a Unix socket path safely: one server per path, private sockets, no stolen files.

libvfio-user's ``vfu_create_ctx`` fails with EADDRINUSE when the path exists
and never removes it, and a killed server leaves its socket file behind. A
probe ("does anything accept on it?") alone cannot decide who may remove the
file: two servers started together both see a stale file, both remove it, and
the slower one removes the socket the faster one has just created.

So a server first takes an exclusive ``flock`` on ``<path>.lock`` and holds it
for its lifetime. Whoever holds the lock owns the path: a socket file there is
stale by definition (its server is gone, or the kernel would still hold that
server's lock) and is removed. A live server that predates the lock protocol
still answers the probe and is left alone. The lock file is unlinked by its
holder on release; a waiter that locked an unlinked file notices (the inode
at the path differs) and tries again.

Sockets are created under ``private_umask()`` (mode 0600 whatever the
process umask is) and chmod-ed to 0600 after creation as well: the vfio-user
socket gives full control of the device, the control socket injects faults.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

from mockaccel_common.logging import get_logger
from mockaccel_vfio_server.errors import SocketInUseError

log = get_logger(__name__)
PROBE_TIMEOUT_S = 1.0
SOCKET_MODE = 0o600
_LOCK_ATTEMPTS = 5


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Create files with mode 0600 at most while the block runs (the umask is process-wide: keep it short)."""
    old = os.umask(0o177)
    try:
        yield
    finally:
        os.umask(old)


def make_private(path: Path) -> None:
    """chmod a socket we just created to 0600 (the umask already did; this states it)."""
    os.chmod(path, SOCKET_MODE)


def _acquire_lock(path: Path) -> int:
    lock = lock_path(path)
    for _ in range(_LOCK_ATTEMPTS):
        with private_umask():
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, SOCKET_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise SocketInUseError(f"a live server already listens on {path} (it holds {lock})") from exc
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # we locked a lock file its previous owner had just unlinked: retry
    raise SocketInUseError(f"could not lock {lock}: it keeps being replaced")


def _remove_stale(path: Path) -> None:
    """Remove a leftover socket at ``path`` (we hold the lock); refuse anything else."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise SocketInUseError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT_S)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        path.unlink(missing_ok=True)
        log.info("stale_socket_removed", path=str(path))
        return
    except FileNotFoundError:
        return  # removed between lstat and connect
    except TimeoutError as exc:  # a listener whose backlog is full is still a listener
        raise SocketInUseError(f"a live server already listens on {path} (connect timed out)") from exc
    finally:
        probe.close()
    raise SocketInUseError(f"a live server already listens on {path}; stop it or choose another path")


class SocketClaim:
    """The right to create a listening socket at ``path``, held until ``release()``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd: int | None = _acquire_lock(path)
        try:
            _remove_stale(path)
        except BaseException:
            self._unlock()
            raise

    def release(self) -> None:
        """Remove the socket file, then the lock file, then drop the lock (idempotent)."""
        if self._lock_fd is None:
            return
        self.path.unlink(missing_ok=True)
        lock_path(self.path).unlink(missing_ok=True)
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> SocketClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim_socket_path(path: Path) -> SocketClaim:
    """Lock ``path`` for this process and clear a stale socket; raise SocketInUseError if it is taken."""
    return SocketClaim(path)
