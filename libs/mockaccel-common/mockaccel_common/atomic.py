"""Crash-safe file replacement: temp file in the same directory, fsync, rename, fsync dir.

A reader (a container runtime loading a CDI spec, the agent reloading its
checkpoint) sees either the old content or the new, never a torn file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data``; readers never see a torn file.

    ``durable``: the data and the rename are on disk when this returns (two
    fsyncs). Without it the replacement is still atomic for every reader, but a
    power loss may lose it; fit for files rebuilt from durable state at start
    (the node agent's transient CDI specs are rewritten from its checkpoint).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if not durable:
        return
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
