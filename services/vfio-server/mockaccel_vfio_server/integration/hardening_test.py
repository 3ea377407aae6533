"""Regression tests for issue 14: each client misbehaviour that crashed, stalled or exposed the server."""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest

from mockaccel_common import regmap as rm
from mockaccel_testing import vfio_user_fuzz as fz
from mockaccel_testing.vfio_server import (
    START_TIMEOUT_S,
    RunningServer,
    server_args,
    server_process,
    short_folder,
    vfio_server,
)
from mockaccel_testing.vfio_user_client import BAR0, REGION_READ, VfioUserClient

FAST = ["--negotiation-timeout", "0.5", "--io-timeout", "0.3"]


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with vfio_server(FAST) as running:
        yield running


def control_latency(server: RunningServer) -> float:
    started = time.monotonic()
    server.control("state")
    return time.monotonic() - started


def test_header_announcing_4_gib_then_close_does_not_kill_the_server(server: RunningServer) -> None:
    # Was: SIGABRT in libuv (the connection fd libvfio-user closed was still watched), or a dead loop.
    for _ in range(20):
        with fz.connect(server.socket) as sock:
            fz.negotiate(sock)
            sock.sendall(fz.header(1, REGION_READ, 0xFFFF_FFF0))
    fz.assert_alive(server.socket, server.control_socket)
    assert server.process.process.poll() is None


def test_a_silent_client_does_not_stall_the_control_api(server: RunningServer) -> None:
    # Was: vfu_attach_ctx blocked the loop in the VERSION read until the client went away.
    with fz.connect(server.socket):
        time.sleep(0)  # the client says nothing at all
        assert max(control_latency(server) for _ in range(5)) < 0.25
        fz.assert_alive(server.socket, server.control_socket)  # served after the negotiation deadline


def test_a_body_that_never_comes_does_not_stall_the_loop(server: RunningServer) -> None:
    # vfu_run_ctx reads the announced body with a blocking recv(); the loop must not wait for it.
    with fz.connect(server.socket) as sock:
        fz.negotiate(sock)
        sock.sendall(fz.header(1, REGION_READ, 1000))
        sock.settimeout(5)
        reply = sock.recv(4096)  # an error reply, or end of input if the server ended us
        assert reply == b"" or struct.unpack_from("<HHIII", reply)[3] & 0x20
        assert control_latency(server) < 0.25
    fz.assert_alive(server.socket, server.control_socket)


def test_fds_with_the_version_message_end_that_client_only(server: RunningServer) -> None:
    # Was: EFAULT from the negotiation (MSG_CTRUNC) was treated as fatal.
    with fz.connect(server.socket) as sock:
        fds = [os.eventfd(0) for _ in range(4)]
        try:
            socket.send_fds(sock, [fz.version_message()], fds)
        finally:
            for fd in fds:
                os.close(fd)
    fz.assert_alive(server.socket, server.control_socket)


def test_any_run_error_ends_the_client_and_the_next_is_served(server: RunningServer) -> None:
    # A reply the client refuses to read: EPIPE/ECONNRESET from do_reply used to be fatal.
    with fz.connect(server.socket) as sock:
        fz.negotiate(sock)
        sock.sendall(fz.message(1, REGION_READ, struct.pack("<QII", 0, BAR0, 4)) * 50)
        sock.shutdown(socket.SHUT_RD)
    fz.assert_alive(server.socket, server.control_socket)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"[" * 30_000 + b"]" * 30_000 + b"\n", "nested too deeply"),
        (b'{"op": "' + b"x" * (128 * 1024) + b'"}\n', "line longer than"),
        (b"\xff\xfe\n", "not"),
    ],
    ids=["deep-nesting", "long-line", "not-utf8"],
)
def test_control_api_refuses_hostile_lines_with_a_clear_error(
    server: RunningServer, line: bytes, expected: str
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(server.control_socket))
        sock.sendall(line)
        reply = json.loads(sock.makefile("rb").readline())
    assert reply["ok"] is False
    assert expected in reply["error"]
    assert server.control("state")["ok"]


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def test_both_sockets_are_0600_whatever_the_umask() -> None:
    with umask(0), vfio_server() as running:
        for path in (running.socket, running.control_socket):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_two_servers_started_together_on_one_path_leave_exactly_one_serving() -> None:
    for _ in range(3):
        with short_folder() as folder, ExitStack() as stack:
            stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            stale.bind(str(folder / "pf.sock"))  # a stale socket both will want to remove
            stale.close()
            procs = []
            for name in ("a", "b"):
                args = server_args(folder)
                args[args.index("--control-socket") + 1] = str(folder / f"ctl-{name}.sock")
                procs.append(stack.enter_context(server_process(args)))
            outcomes = []
            for proc in procs:
                found = proc.wait_until(
                    lambda e: e.get("event") in ("server_listening", "service_failed"), START_TIMEOUT_S
                )
                assert found is not None
                outcomes.append(found["event"])
            assert sorted(outcomes) == ["server_listening", "service_failed"]
            with VfioUserClient(folder / "pf.sock") as client:
                assert client.read_int(BAR0, 0, 4) == rm.DEVICE_MAGIC
