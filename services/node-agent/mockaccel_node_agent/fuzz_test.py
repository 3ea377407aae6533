"""Hostile input on the plugin's three sockets: registration, DRA and health (tagged integration).

The agent runs as its own process on a simulated node (so its RSS is its
own), with a fake API server behind the real client. Every case is sent the
way an unfriendly local client would, over the Unix sockets this test made:

* transport: bytes that are not HTTP/2, frames that announce 16 MiB, gRPC
  length prefixes of 2 GiB, more streams and bytes than a connection may hold,
  compressed flags, missing and short messages;
* protobuf: every truncation and seeded bit flips and random bytes of each
  method's request, strings that are not UTF-8, groups, lengths past the end;
* semantics: 1 MiB registration errors, claims with ``/`` in their names,
  names and UIDs that are not DNS names or are far too long, too many claims.

After each case a well-formed GetInfo and a prepare/unprepare must work and
the agent's RSS must be back within ``RSS_SLACK`` of its idle value. The suite
is seeded and bounded (``CASE_BUDGET_S``) so that CI time stays fixed.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from mockaccel_node_agent._generated import pluginregistration as reg
from mockaccel_node_agent._generated.k8s.io.kubelet.pkg.apis.dra import v1 as dra_v1
from mockaccel_node_agent.adapters.grpc_guard import clip
from mockaccel_node_agent.conftest import NODE
from mockaccel_node_agent.domain.claims import ClaimRef
from mockaccel_testing.kubelet_client import KubeletClient
from mockaccel_testing.node_agent import DRIVER, AgentDirs, FakeApiServer, claim_object, kubeconfig_for
from mockaccel_testing.raw_grpc import PREFACE, Answer, call, frame, send_raw
from mockaccel_testing.service_process import ServiceProcess, service_process

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(600)]

GET_INFO = "/pluginregistration.Registration/GetInfo"
NOTIFY = "/pluginregistration.Registration/NotifyRegistrationStatus"
PREPARE = "/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/NodePrepareResources"
UNPREPARE = "/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/NodeUnprepareResources"
PREPARE_B1 = "/k8s.io.kubelet.pkg.apis.dra.v1beta1.DRAPlugin/NodePrepareResources"
UNPREPARE_B1 = "/k8s.io.kubelet.pkg.apis.dra.v1beta1.DRAPlugin/NodeUnprepareResources"
WATCH = "/v1alpha1.DRAResourceHealth/NodeWatchResources"
RSS_SLACK_KIB = 24 * 1024
CASE_BUDGET_S = 5.0
MiB = 1024 * 1024
POOL0 = f"{NODE}/numa0"


def _prepare_bytes(*claims: tuple[str, str, str]) -> bytes:
    return bytes(
        dra_v1.NodePrepareResourcesRequest(claims=[dra_v1.Claim(namespace=n, uid=u, name=c) for n, u, c in claims])
    )


VALID = {
    GET_INFO: b"",
    NOTIFY: bytes(reg.RegistrationStatus(plugin_registered=True, error="")),
    PREPARE: _prepare_bytes(("ns", "fuzz-uid", "fuzz-claim")),
    UNPREPARE: _prepare_bytes(("ns", "fuzz-uid", "fuzz-claim")),  # same wire shape
    PREPARE_B1: _prepare_bytes(("ns", "fuzz-uid", "fuzz-claim")),
    UNPREPARE_B1: _prepare_bytes(("ns", "fuzz-uid", "fuzz-claim")),
}
# Malformed for a message whose field 1 is a string or a message.
MALFORMED = {
    "not_utf8": b"\x0a\x05\x0a\x03\xff\xfe\xfd",
    "length_past_end": b"\x0a\xff\xff\xff\xff\x0f",
    "group": b"\x0b\x0c",
    "overlong_varint": b"\x08" + b"\xff" * 11,
    "field_zero": b"\x02\x00",
    "truncated_fixed64": b"\x09\x01\x02",
    "nested_truncated": b"\x0a\x04\x0a\x09ns",
}


@dataclass
class Target:
    dirs: AgentDirs
    api: FakeApiServer
    service: ServiceProcess
    idle_rss_kib: int

    @property
    def registration(self) -> Path:
        return self.dirs.registration_socket

    @property
    def dra(self) -> Path:
        return self.dirs.plugin / "dra.sock"

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.service.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def socket_for(self, method: str) -> Path:
        return self.registration if method.startswith("/pluginregistration.") else self.dra


async def still_serving(target: Target) -> None:
    """A well-formed GetInfo and prepare/unprepare work, and RSS is back near idle."""
    client = KubeletClient(target.registration, timeout=10)
    try:
        info = await client.get_info()
        assert info.name == DRIVER
        await client.notify(True)
        ref = ClaimRef("ns", "uid-ok", "c-ok")
        answer = (await client.prepare([ref]))["uid-ok"]
        assert answer.error == "", answer.error
        assert await client.unprepare([ref]) == {"uid-ok": ""}
    finally:
        client.close()
    deadline = time.monotonic() + 10
    while (rss := target.rss_kib()) > target.idle_rss_kib + RSS_SLACK_KIB:
        assert time.monotonic() < deadline, f"RSS {rss} KiB stays above idle {target.idle_rss_kib} KiB"
        await asyncio.sleep(0.1)


@pytest_asyncio.fixture
async def target() -> AsyncIterator[Target]:
    from mockaccel_testing.node_agent import agent_dirs, simulated_node

    api = FakeApiServer()
    await api.start()
    api.add(claim_object("ns", "c-ok", "uid-ok", [("r", DRIVER, POOL0, "mock0")]))
    with agent_dirs() as dirs:
        for sub in (dirs.plugin, dirs.cdi, dirs.registry):
            sub.mkdir(parents=True)
        simulated_node(dirs, NODE, pfs=4, numa_nodes=2)
        env = dirs.env(NODE, kubeconfig_for(dirs.root / "kubeconfig", server=api.url))
        env["MOCKACCEL_HEALTH_RESEND_INTERVAL"] = "1"
        with service_process("mockaccel_node_agent", env=env) as service:
            await asyncio.to_thread(service.wait_for_event, "agent_ready")
            made = Target(dirs, api, service, idle_rss_kib=0)
            await still_serving_once(made)
            made.idle_rss_kib = made.rss_kib()
            yield made
            assert service.process.poll() is None, "the agent died"
    await api.stop()


async def still_serving_once(target: Target) -> None:
    target.idle_rss_kib = 10**9
    await still_serving(target)


# --- cases --------------------------------------------------------------------

Case = Callable[[Target], Awaitable[None]]
CASES: dict[str, Case] = {}


def case(name: str) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        CASES[name] = fn
        return fn

    return register


def expect_invalid(answer: Answer, what: str) -> None:
    assert answer.status == Status.INVALID_ARGUMENT.value, f"{what}: {answer}"
    assert len(answer.message) <= 512


def expect_handled(answer: Answer, method: str, what: str) -> None:
    """Any answer a well-behaved server may give: OK, INVALID_ARGUMENT, or the helper's registration error."""
    assert answer.message != "Internal Server Error", f"{what}: {answer}"
    allowed = {Status.OK.value, Status.INVALID_ARGUMENT.value}
    if method == NOTIFY:
        allowed.add(Status.UNKNOWN.value)  # plugin_registered=false, as the kubeletplugin helper answers
    if method == WATCH and answer.status is None:
        return  # a stream that opened and stayed open until the client's deadline
    assert answer.status in allowed, f"{what}: {answer}"
    assert len(answer.message) <= 512, f"{what}: echoed {len(answer.message)} characters"


# transport -------------------------------------------------------------------


@case("transport/not_http2")
async def _not_http2(t: Target) -> None:
    for sock in (t.registration, t.dra):
        assert await send_raw(sock, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 10)


@case("transport/frame_announcing_16MiB")
async def _big_frame(t: Target) -> None:
    settings = frame(0x4, 0, 0)
    for kind in (0x0, 0x1, 0x9):  # DATA, HEADERS, CONTINUATION
        head = frame(kind, 0, 1, length=(1 << 24) - 1)
        assert await send_raw(t.dra, PREFACE + settings + head + b"\0" * MiB), kind


@case("transport/ten_connections_with_16MiB_frames")
async def _many_big_frames(t: Target) -> None:
    head = PREFACE + frame(0x4, 0, 0) + frame(0x0, 0, 1, length=(1 << 24) - 1)
    results = await asyncio.gather(*(send_raw(t.registration, head + b"\0" * (2 * MiB)) for _ in range(10)))
    assert all(results)


@case("transport/2GiB_length_prefix")
async def _huge_prefix(t: Target) -> None:
    for method in (GET_INFO, NOTIFY):
        answer = await call(t.registration, method, b"\0" * (2 * MiB), length=(1 << 31), timeout=10)
        assert answer.dropped or answer.status == Status.INVALID_ARGUMENT.value, answer


@case("transport/prefix_longer_than_data")
async def _short_data(t: Target) -> None:
    expect_invalid(await call(t.dra, PREPARE, VALID[PREPARE], length=len(VALID[PREPARE]) + 10), "short data")


@case("transport/message_over_limit")
async def _over_limit(t: Target) -> None:
    big = _prepare_bytes(*(("ns", f"u{i}", f"c{i:04}" + "x" * 200) for i in range(2_000)))  # ~430 KB
    answer = await call(t.dra, PREPARE, big, timeout=20)
    assert answer.dropped or answer.status in (Status.INVALID_ARGUMENT.value, Status.RESOURCE_EXHAUSTED.value)


@case("transport/compressed_flag")
async def _compressed(t: Target) -> None:
    payload = VALID[PREPARE]
    raw = struct.pack(">?I", True, len(payload)) + payload
    expect_invalid(await call(t.dra, PREPARE, b"", raw=raw), "compressed flag")


@case("transport/no_message")
async def _no_message(t: Target) -> None:
    for method in (PREPARE, UNPREPARE, NOTIFY, GET_INFO, WATCH):
        expect_invalid(await call(t.socket_for(method), method, b"", raw=b""), f"{method} without a message")
        expect_invalid(await call(t.socket_for(method), method, b"", raw=b"\0\0\0"), f"{method} half a prefix")


@case("transport/too_many_open_streams")
async def _streams(t: Target) -> None:
    payload = PREFACE + frame(0x4, 0, 0)
    block = bytes([0x83, 0x86])  # :method POST, :scheme http (static table)
    for stream in range(1, 80, 2):
        payload += frame(0x1, 0x4, stream, block)  # HEADERS, END_HEADERS, no END_STREAM
    assert await send_raw(t.dra, payload)


@case("transport/bytes_held_per_connection")
async def _held(t: Target) -> None:
    answers = await asyncio.gather(
        *(call(t.dra, PREPARE, b"\0" * 200_000, length=250_000, end_stream=False, timeout=3) for _ in range(12))
    )
    assert all(a.dropped or a.status is None for a in answers)


@case("transport/half_preface_held")
async def _half(t: Target) -> None:
    results = await asyncio.gather(*(send_raw(t.registration, PREFACE[:10], timeout=0.5) for _ in range(20)))
    assert not any(results)  # held open by the client, then closed by it: nothing leaks


# protobuf ----------------------------------------------------------------------


def _protobuf_cases() -> None:
    rng = random.Random(13)
    for method, valid in VALID.items():
        for cut in range(1, len(valid)):
            CASES[f"protobuf/{method}/truncated_{cut}"] = _handled(method, valid[:cut])
        if method == NOTIFY:  # field 1 is a bool: aim at field 2, the error string
            for name, body in MALFORMED.items():
                if name != "nested_truncated":
                    retagged = bytes([body[0] + 8 if body[0] >= 8 else body[0]]) + body[1:]
                    CASES[f"protobuf/{method}/{name}"] = _invalid(method, retagged)
        elif method != GET_INFO:
            for name, body in MALFORMED.items():
                CASES[f"protobuf/{method}/{name}"] = _invalid(method, body)
        for i in range(6):
            flipped = bytearray(valid or b"\x0a\x00")
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
            CASES[f"protobuf/{method}/bitflip_{i}"] = _handled(method, bytes(flipped))
        for i in range(6):
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
            CASES[f"protobuf/{method}/random_{i}"] = _handled(method, body)
    for name, body in MALFORMED.items():
        CASES[f"protobuf/{WATCH}/{name}"] = _handled(WATCH, body)  # an empty message: unknown fields only


def _handled(method: str, body: bytes) -> Case:
    async def run(t: Target) -> None:
        expect_handled(await call(t.socket_for(method), method, body, timeout=2), method, repr(body[:40]))

    return run


def _invalid(method: str, body: bytes) -> Case:
    async def run(t: Target) -> None:
        expect_invalid(await call(t.socket_for(method), method, body, timeout=5), repr(body[:40]))

    return run


_protobuf_cases()


# semantics ---------------------------------------------------------------------


@case("semantic/registration_error_1MiB")
async def _big_error(t: Target) -> None:
    body = bytes(reg.RegistrationStatus(plugin_registered=False, error="e" * (MiB - 64)))
    started = time.monotonic()
    answer = await call(t.registration, NOTIFY, body, timeout=30)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"the 1 MiB error took {elapsed:.1f} s"
    # Over the message limit (dropped) or answered with a short message, never echoed whole.
    assert answer.dropped or len(answer.message) <= 512, answer
    body = bytes(reg.RegistrationStatus(plugin_registered=False, error="e" * 200_000))
    answer = await call(t.registration, NOTIFY, body, timeout=30)
    assert answer.status == Status.UNKNOWN.value
    assert len(answer.message) <= 512


@case("semantic/name_with_slash_never_reaches_a_url")
async def _slash(t: Target) -> None:
    t.api.add(claim_object("ns", "victim", "uid-v", [("r", DRIVER, POOL0, "mock1")]))
    before = t.api.requests
    client = KubeletClient(t.registration, timeout=10)
    try:
        for name in ("victim/status", "../victim", "victim?x=1", "Victim", "v" * 254, "vic tim", "victim%2Fstatus"):
            answer = (await client.prepare([ClaimRef("ns", "uid-v", name)]))["uid-v"]
            assert "DNS" in answer.error, (name, answer)
        for namespace in ("ns/x", "NS", "n" * 64, ""):
            answer = (await client.prepare([ClaimRef(namespace, "uid-v", "victim")]))["uid-v"]
            assert answer.error, (namespace, answer)
    finally:
        client.close()
    assert t.api.requests == before, "an invalid name reached the API server"
    assert "mock1" not in t.dirs.allocated()


@case("semantic/uids")
async def _uids(t: Target) -> None:
    for uid in ("", "u" * 129, "a b", "é", "x\n"):
        expect_invalid(await call(t.dra, PREPARE, _prepare_bytes(("ns", uid, "c"))), repr(uid))
        expect_invalid(await call(t.dra, UNPREPARE, _prepare_bytes(("ns", uid, "c"))), repr(uid))


@case("semantic/too_many_claims")
async def _many(t: Target) -> None:
    body = _prepare_bytes(*(("ns", f"u{i}", f"c{i}") for i in range(257)))
    expect_invalid(await call(t.dra, PREPARE, body), "257 claims")
    body = _prepare_bytes(*(("ns", f"u{i}", f"c{i}") for i in range(256)))
    started = time.monotonic()
    answer = await call(t.dra, PREPARE, body, timeout=30)
    assert answer.ok, answer
    assert time.monotonic() - started < 10


@case("semantic/duplicate_and_unknown_claims")
async def _dups(t: Target) -> None:
    body = _prepare_bytes(*(("ns", "same", "c-missing") for _ in range(50)))
    assert (await call(t.dra, PREPARE, body)).ok
    assert (await call(t.dra, UNPREPARE, body)).ok


@case("semantic/health_streams_opened_and_dropped")
async def _health(t: Target) -> None:
    answers = await asyncio.gather(*(call(t.dra, WATCH, b"", timeout=0.5) for _ in range(30)))
    assert all(a.status is None or a.ok for a in answers)


# --- the suite ------------------------------------------------------------------


async def test_fuzz_the_plugin_sockets(target: Target) -> None:
    started = time.monotonic()
    slow: list[tuple[str, float]] = []
    failed: list[str] = []
    for name, run in CASES.items():
        assert target.service.process.poll() is None, f"the agent died before case {name}"
        began = time.monotonic()
        try:
            async with asyncio.timeout(CASE_BUDGET_S * 6):
                await run(target)
                await still_serving(target)
        except (AssertionError, TimeoutError, OSError, GRPCError, StreamTerminatedError) as exc:
            failed.append(f"{name}: {clip(repr(exc), 300)}")
        if time.monotonic() - began > CASE_BUDGET_S:
            slow.append((name, round(time.monotonic() - began, 1)))
    elapsed = time.monotonic() - started
    print(
        f"fuzz: {len(CASES)} cases in {elapsed:.1f} s; idle RSS {target.idle_rss_kib} KiB, now {target.rss_kib()} KiB"
    )
    assert not failed, f"{len(failed)} of {len(CASES)} cases failed:\n" + "\n".join(failed)
    assert not slow, f"cases over {CASE_BUDGET_S} s: {slow}"
    assert len(CASES) >= 150
