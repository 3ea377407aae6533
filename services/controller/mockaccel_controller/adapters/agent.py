"""Is the node agent serving its DRA socket? Asked by connecting to it.

Why: slices advertise devices that the node agent must prepare. kubelet
wipes a driver's slices when no plugin of the driver has been registered for
30 s; re-creating them while the agent is down would advertise devices that
no one on the node can prepare, so the controller only publishes while a
connect to the agent's socket succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

CONNECT_TIMEOUT_S = 1.0


async def agent_serving(socket: Path) -> str | None:
    """None when a connection to ``socket`` succeeds, else why it did not."""
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            _, writer = await asyncio.open_unix_connection(str(socket))
    except FileNotFoundError:
        return "socket missing"
    except ConnectionRefusedError:
        return "connection refused"
    except TimeoutError:
        return "connect timed out"
    except OSError as exc:
        return f"connect failed: {exc.strerror or exc}"
    writer.close()
    with contextlib.suppress(OSError):  # the peer closing first is fine: it was serving
        await writer.wait_closed()
    return None
