"""Loopback ports and synchronous HTTP probes.

Probes are plain blocking calls on purpose: the control plane is started from a
session-scoped pytest fixture that must not depend on any event loop.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from contextlib import ExitStack
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """Ports the kernel reports free, all held open together so they are distinct."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind((LOOPBACK, 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def http_get(
    port: int,
    path: str,
    *,
    tls: bool,
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    timeout: float = 5.0,
) -> tuple[int, str]:
    """GET https?://127.0.0.1:port/path; returns (status, body). Raises OSError when down."""
    conn: http.client.HTTPConnection
    if tls:
        ctx = ssl.create_default_context(cafile=str(ca)) if ca else _insecure_context()
        if cert and key:
            ctx.load_cert_chain(str(cert), str(key))
        conn = http.client.HTTPSConnection(LOOPBACK, port, context=ctx, timeout=timeout)
    else:
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def _insecure_context() -> ssl.SSLContext:
    """Scheduler and controller-manager serve self-signed health endpoints."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
