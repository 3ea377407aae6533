"""Reading the passphrase wordlist file, once at start, without blocking the event loop (aiofiles)."""

from __future__ import annotations

from pathlib import Path

import aiofiles

from mockaccel_common.passphrase import Wordlist
from mockaccel_vfio_server.errors import WordlistError


async def read_wordlist(path: Path) -> Wordlist:
    try:
        async with aiofiles.open(path, "rb") as file:
            data = await file.read()
    except OSError as exc:
        raise WordlistError(f"cannot read wordlist {path}: {exc.strerror or exc}") from exc
    return Wordlist.parse(data, str(path))
