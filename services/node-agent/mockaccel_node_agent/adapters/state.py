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


class CheckpointStore:
    def __init__(self, plugin_dir: Path) -> None:
        self.path = plugin_dir / CHECKPOINT_FILE

    def load_sync(self) -> Checkpoint:
        """The stored checkpoint; empty if there is none; CheckpointCorruptError if it does not verify."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return Checkpoint()
        except OSError as exc:
            raise CheckpointCorruptError(f"cannot read {self.path}: {exc.strerror}", path=str(self.path)) from exc
        return codec.decode(raw, path=str(self.path))

    def save_sync(self, checkpoint: Checkpoint) -> None:
        try:
            atomic_write_bytes(self.path, codec.encode(checkpoint), 0o600)
        except OSError as exc:
            raise PermanentError(f"cannot write the checkpoint {self.path}: {exc.strerror}") from exc

    async def load(self) -> Checkpoint:
        return await asyncio.to_thread(self.load_sync)

    async def save(self, checkpoint: Checkpoint) -> None:
        await asyncio.to_thread(self.save_sync, checkpoint)


class SerialLock:
    """Serialises state changes within this process and across agent instances."""

    def __init__(self, plugin_dir: Path) -> None:
        self.path = plugin_dir / LOCK_FILE
        self._local = asyncio.Lock()

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        async with self._local:
            fd = await asyncio.to_thread(self._acquire)
            try:
                yield
            finally:
                os.close(fd)  # closing the descriptor releases the flock

    def _acquire(self) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd
