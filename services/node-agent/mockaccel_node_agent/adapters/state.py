"""The agent's shared on-disk state: the checkpoint file and the cross-instance lock.

During a rolling update two agent instances serve the same node and kubelet
may call either (docs/node-agent.md), so the state lives in files and every
mutation holds an exclusive ``flock`` on ``<plugin dir>/serialize.lock``, as
the kubeletplugin helper does. Within one process an asyncio lock queues
callers first, because flock on one open file description does not exclude
threads of the same process.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from mockaccel_common.atomic import atomic_write_bytes
from mockaccel_node_agent.domain import checkpoint as codec
from mockaccel_node_agent.domain.checkpoint import Checkpoint
from mockaccel_node_agent.errors import CheckpointCorruptError, PermanentError

CHECKPOINT_FILE = "checkpoint.json"
LOCK_FILE = "serialize.lock"


_Identity = tuple[int, int, int, int, int]


def _identity(path: Path) -> _Identity | None:
    """What changes whenever the file is replaced (atomic writes make a new inode)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class CheckpointStore:
    """The checkpoint file. The last checkpoint read or written is kept with the file's identity,
    so a load re-reads and re-verifies the file only when someone else (another instance during a
    rolling update) replaced it; every call still goes to the file's metadata, never to memory alone."""

    def __init__(self, plugin_dir: Path) -> None:
        self.path = plugin_dir / CHECKPOINT_FILE
        self._cached: tuple[_Identity, Checkpoint] | None = None

    def load_sync(self) -> Checkpoint:
        """The stored checkpoint; empty if there is none; CheckpointCorruptError if it does not verify."""
        try:
            identity = _identity(self.path)
            if identity is None:
                return Checkpoint()
            if self._cached is not None and self._cached[0] == identity:
                return self._cached[1]
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return Checkpoint()
        except OSError as exc:
            raise CheckpointCorruptError(f"cannot read {self.path}: {exc.strerror}", path=str(self.path)) from exc
        checkpoint = codec.decode(raw, path=str(self.path))
        if _identity(self.path) == identity:  # not replaced while it was read
            self._cached = (identity, checkpoint)
        return checkpoint

    def save_sync(self, checkpoint: Checkpoint) -> None:
        self._cached = None
        try:
            atomic_write_bytes(self.path, codec.encode(checkpoint), 0o600)
            identity = _identity(self.path)
        except OSError as exc:
            raise PermanentError(f"cannot write the checkpoint {self.path}: {exc.strerror}") from exc
        if identity is not None:
            self._cached = (identity, checkpoint)

    async def load(self) -> Checkpoint:
        cached = self._cached
        # The common case costs one stat on the loop; a changed file is read in a worker thread.
        if cached is not None and _identity(self.path) == cached[0]:
            return cached[1]
        return await asyncio.to_thread(self.load_sync)


class SerialLock:
    """Serialises state changes within this process and across agent instances."""

    def __init__(self, plugin_dir: Path) -> None:
        self.path = plugin_dir / LOCK_FILE
        self._local = asyncio.Lock()

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        async with self._local:
            # Uncontended (the usual case) the flock is taken on the loop without blocking;
            # only when another instance holds it does a worker thread wait for it.
            fd = self._try_acquire()
            if fd is None:
                fd = await asyncio.to_thread(self._acquire)
            try:
                yield
            finally:
                os.close(fd)  # closing the descriptor releases the flock

    def _open(self) -> int:
        return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def _try_acquire(self) -> int | None:
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _acquire(self) -> int:
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd
