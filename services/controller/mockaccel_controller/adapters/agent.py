"""Is a node agent serving a DRA socket in the plugin directory? Asked by connecting to it.

Why: slices advertise devices that the node agent must prepare. kubelet
wipes a driver's slices when no plugin of the driver has been registered for
30 s; re-creating them while the agent is down would advertise devices that
no one on the node can prepare, so the controller only publishes while a
connect to an agent's socket succeeds. Which sockets: the naming rule in
mockaccel_common.plugin_socket (``dra.sock`` or ``dra-<pod UID>.sock``).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from mockaccel_common.plugin_socket import dra_sockets

CONNECT_TIMEOUT_S = 1.0


async def agent_serving(plugin_dir: Path) -> str | None:
    """None when a DRA socket in ``plugin_dir`` accepts a connection, else why none did."""
    sockets = await asyncio.to_thread(dra_sockets, plugin_dir)
    if not sockets:
        return "no DRA socket in the plugin directory"
    problems = []
    for socket in sockets:
        problem = await _connect(socket)
        if problem is None:
            return None
        problems.append(f"{socket.name}: {problem}")
    return "; ".join(problems)


async def _connect(socket: Path) -> str | None:
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
