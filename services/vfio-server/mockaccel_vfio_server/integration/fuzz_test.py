"""Protocol fuzzing: thousands of unfriendly vfio-user clients against one real server.

Each case is one connection that misbehaves (random bytes, malformed or
oversized headers, hostile payloads, passed fds, a valid session cut at every
byte, truncated headers, bodies that never come, silence, a crowd). After
every case the control API must answer and a fresh client must negotiate and
read ID; at the end the server process is still the one we started, logged no
``service_failed``, and holds no more fds than before (passed fds are closed).

Bounded: the cases are generated from a fixed seed (``FUZZ_SEED``, printed),
the server runs with short negotiation and I/O deadlines, and every socket is
a loopback Unix socket in a folder this test created. The case count and the
duration are printed (``pants test --output=all`` shows them).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import pytest

from mockaccel_testing import vfio_user_fuzz as fz
from mockaccel_testing.polling import wait_until_sync
from mockaccel_testing.vfio_server import RunningServer, vfio_server
from mockaccel_testing.vfio_user_client import BAR0, VfioUserClient

FUZZ_SEED = int(os.environ.get("MOCKACCEL_FUZZ_SEED", "20261130"))
NEGOTIATION_TIMEOUT_S = 2.0
IO_TIMEOUT_S = 0.5


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    args = ["--negotiation-timeout", str(NEGOTIATION_TIMEOUT_S), "--io-timeout", str(IO_TIMEOUT_S)]
    with vfio_server(args) as running:
        yield running


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def play(server: RunningServer, cases: Iterable[fz.FuzzCase]) -> int:
    played = 0
    for index, case in enumerate(cases):
        fz.run_case(server.socket, case)
        try:
            fz.assert_alive(server.socket, server.control_socket)
        except Exception as exc:
            where = f"case {index} ({case.kind}, seed {FUZZ_SEED})"
            raise AssertionError(f"server not alive after {where}: {exc!r}") from exc
        played += 1
    assert server.process.process.poll() is None
    return played


GENERATORS: dict[str, Callable[[random.Random], Iterable[fz.FuzzCase]]] = {
    "random-bytes": lambda rng: fz.random_bytes_cases(rng, 600),
    "malformed-header": lambda rng: fz.malformed_header_cases(rng, 800),
    "structured": lambda rng: fz.structured_cases(rng, 800),
    "fds": lambda rng: fz.fd_cases(rng, 150),
    "truncated-header": lambda rng: fz.truncated_header_cases(),
    "abrupt-close": lambda rng: fz.abrupt_close_cases(),
    "slow-body": lambda rng: fz.slow_body_cases(8, linger_s=5 * IO_TIMEOUT_S),
}
TOTALS: dict[str, tuple[int, float]] = {}


@pytest.mark.parametrize("kind", list(GENERATORS), ids=list(GENERATORS))
def test_fuzz(server: RunningServer, kind: str) -> None:
    before = open_fds(server.process.process.pid)
    started = time.monotonic()
    played = play(server, GENERATORS[kind](random.Random(f"{FUZZ_SEED}-{kind}")))
    took = time.monotonic() - started
    TOTALS[kind] = (played, took)
    print(f"fuzz {kind}: {played} cases in {took:.1f} s (seed {FUZZ_SEED})")
    assert open_fds(server.process.process.pid) <= before + 2, "the server leaks file descriptors"
    assert not [e for e in server.process.events if e.get("event") == "service_failed"]


# A blocked loop would hold the control API for the whole negotiation timeout (2 s);
# an answer well inside it proves the loop is free, with room for a loaded 2-core machine.
UNBLOCKED_S = 1.0


def test_silent_clients_never_stall_the_control_api(server: RunningServer) -> None:
    silent = [fz.connect(server.socket) for _ in range(5)]
    try:
        for _ in range(10):
            started = time.monotonic()
            server.control("state")
            assert time.monotonic() - started < UNBLOCKED_S
    finally:
        for sock in silent:
            sock.close()
    fz.assert_alive(server.socket, server.control_socket)


def test_a_silent_client_after_negotiation_is_served_next_to_the_control_api(server: RunningServer) -> None:
    with fz.connect(server.socket) as idle:
        fz.negotiate(idle)
        started = time.monotonic()
        server.control("state")
        assert time.monotonic() - started < UNBLOCKED_S
        # An idle attached client is legitimate (QEMU idles for minutes): it keeps the device.
        # The library answers VERSION inside vfu_attach_ctx, in the server's worker thread, and the
        # loop marks the client attached when that call returns: a moment after our reply, so poll.
        wait_until_sync("the idle client to be attached", lambda: server.control("state")["state"]["client_attached"])
    fz.assert_alive(server.socket, server.control_socket)


def test_many_clients_at_once_are_served_one_after_another(server: RunningServer) -> None:
    results: list[int] = []
    errors: list[BaseException] = []

    def client() -> None:
        try:
            with VfioUserClient(server.socket, timeout=30) as c:
                results.append(c.read_int(BAR0, 0, 4))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors[:3]
    assert len(results) == 40


def test_summary(server: RunningServer) -> None:
    """Runs last: the total, for the record (and the server is still the one we started)."""
    cases = sum(n for n, _ in TOTALS.values())
    seconds = sum(t for _, t in TOTALS.values())
    print(f"fuzz total: {cases} cases in {seconds:.1f} s (seed {FUZZ_SEED})")
    assert server.process.process.poll() is None
    served = server.control("state")["state"]["clients_served"]
    assert served >= cases
