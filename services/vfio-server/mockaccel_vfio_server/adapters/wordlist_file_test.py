from __future__ import annotations

from pathlib import Path

import pytest

from mockaccel_vfio_server.adapters.wordlist_file import read_wordlist
from mockaccel_vfio_server.errors import WordlistError


@pytest.mark.asyncio
async def test_missing_wordlist_file_is_a_wordlist_error(tmp_path: Path) -> None:
    with pytest.raises(WordlistError, match="cannot read wordlist"):
        await read_wordlist(tmp_path / "absent.txt")
