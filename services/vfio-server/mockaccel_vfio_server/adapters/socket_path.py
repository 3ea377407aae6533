"""Make a Unix socket path usable for a new listening socket, safely.

libvfio-user's ``vfu_create_ctx`` fails with EADDRINUSE when the path exists
and never removes it, and a killed server leaves its socket file behind. So:
if something accepts a connection on the path, another server is alive and
we refuse to start; if the connection is refused, the file is stale and is
removed; if the path is not a socket at all, it belongs to someone else and
we refuse rather than delete it.
"""

from __future__ import annotations

import socket
import stat
from pathlib import Path

from mockaccel_common.logging import get_logger
from mockaccel_vfio_server.errors import SocketInUseError

log = get_logger(__name__)
PROBE_TIMEOUT_S = 1.0


def claim_socket_path(path: Path) -> None:
    """Return when ``path`` does not exist (removing a stale socket); raise SocketInUseError otherwise."""
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
