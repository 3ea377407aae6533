"""Process lifecycle: signals at any time, socket files, start-up refusals, the CLIs."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

import pytest

from mockaccel_common import regmap as rm
from mockaccel_testing.service_process import python_env
from mockaccel_testing.vfio_server import (
    MODULE,
    START_TIMEOUT_S,
    RunningServer,
    server_args,
    server_env,
    server_process,
    short_folder,
    vfio_server,
)
from mockaccel_testing.vfio_user_client import BAR0, VfioUserClient

# Well inside the drain deadline (10 s): a stop that waited for it would fail here.
STOP_DEADLINE_S = 3.0


def assert_clean_stop(server: RunningServer, sig: int) -> None:
    code, elapsed = server.process.stop(sig)
    assert code == 0, server.process.read_stderr()
    assert elapsed < STOP_DEADLINE_S, f"took {elapsed:.2f} s"
    assert not server.socket.exists()
    assert not server.control_socket.exists()
    assert server.process.events[-1]["event"] == "service_stopped"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_stop_while_idle(sig: int) -> None:
    with vfio_server() as server:
        assert_clean_stop(server, sig)


def test_stop_while_attached() -> None:
    with vfio_server() as server, VfioUserClient(server.socket) as client:
        assert client.read_int(BAR0, 0, 4) == rm.DEVICE_MAGIC
        server.process.wait_for_event("server_ready")
        assert_clean_stop(server, signal.SIGTERM)


def test_stop_during_a_burst_of_accesses() -> None:
    reads = 0
    stop = threading.Event()

    def hammer(server: RunningServer) -> None:
        nonlocal reads
        try:
            with VfioUserClient(server.socket, timeout=5) as client:
                while not stop.is_set():
                    client.read_int(BAR0, 0, 4)
                    reads += 1
        except OSError:
            pass  # the server went away mid-burst, as intended

    with vfio_server() as server:
        thread = threading.Thread(target=hammer, args=(server,))
        thread.start()
        try:
            server.process.wait_for_event("server_ready")
            while reads < 200:
                threading.Event().wait(0.01)
            assert_clean_stop(server, signal.SIGTERM)
        finally:
            stop.set()
            thread.join(10)


def test_stale_socket_is_removed() -> None:
    with short_folder() as folder:
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(str(folder / "pf.sock"))  # bound, never listening: connect() is refused
        stale.close()
        with server_process(server_args(folder)) as proc:
            proc.wait_for_event("server_listening", timeout=START_TIMEOUT_S)
            proc.wait_for_event("stale_socket_removed")
            with VfioUserClient(folder / "pf.sock") as client:
                assert client.read_int(BAR0, 0, 4) == rm.DEVICE_MAGIC


def test_live_socket_is_refused_and_the_live_server_keeps_serving() -> None:
    with vfio_server() as server:
        second_control = server.folder / "ctl2.sock"
        argv = ["--control-socket", str(second_control), str(server.socket)]
        with server_process(argv) as second:
            failure = second.wait_for_event("service_failed", timeout=START_TIMEOUT_S)
            assert "a live server already listens" in str(failure["error"])
            assert second.process.wait(timeout=10) == 1
        with VfioUserClient(server.socket) as client:
            assert client.read_int(BAR0, 0, 4) == rm.DEVICE_MAGIC


def test_a_regular_file_on_the_socket_path_is_not_deleted() -> None:
    with short_folder() as folder:
        (folder / "pf.sock").write_text("precious")
        with server_process(server_args(folder)) as proc:
            failure = proc.wait_for_event("service_failed", timeout=START_TIMEOUT_S)
            assert "is not a socket" in str(failure["error"])
        assert (folder / "pf.sock").read_text() == "precious"


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["-m", "16X", "/tmp/x.sock"], "not a size"), (["-u", "MOCK-0001", "/tmp/x.sock"], "not a UUID")],
    ids=["bad-size", "bad-uuid"],
)
def test_bad_command_lines_exit_2(argv: list[str], message: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", MODULE, *argv], capture_output=True, text=True, env=server_env(), timeout=60
    )
    assert run.returncode == 2
    assert message in run.stderr


def test_mockaccel_cli() -> None:
    with vfio_server() as server:
        def cli(*args: str) -> tuple[int, dict[str, Any]]:
            command = [sys.executable, "-m", "mockaccel_vfio_server.cli", "device"]
            command += ["--control-socket", str(server.control_socket), *args]
            run = subprocess.run(command, capture_output=True, text=True, env=python_env(), timeout=60)
            return run.returncode, json.loads(run.stdout)

        assert cli("read", "0x2c") == (0, {"ok": True, "value": 2})
        assert cli("write", "0x2c", "1") == (0, {"ok": True})
        assert cli("health", "pf", "unhealthy")[1]["changed"] is True
        assert cli("read", "0x2c") == (0, {"ok": True, "value": 7})
        assert cli("fault", "slow", "20")[1]["faults"] == {"fail_reads": False, "fail_writes": False, "slow_ms": 20}
        assert [vf["index"] for vf in cli("vfs")[1]["vfs"]] == [0, 1, 2, 3]
        code, refused = cli("write", "0x0", "1")
        assert code == 1
        assert refused["ok"] is False
