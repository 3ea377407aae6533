from __future__ import annotations

import json

import pytest

from mockaccel_node_agent.domain import checkpoint as codec
from mockaccel_node_agent.domain.checkpoint import Checkpoint
from mockaccel_node_agent.domain.claims import ClaimRef, PreparedClaim, PreparedDevice
from mockaccel_node_agent.errors import CheckpointCorruptError


def claim(uid: str, *devices: str) -> PreparedClaim:
    return PreparedClaim(
        ref=ClaimRef("ns", uid, f"name-{uid}"),
        cdi_spec=f"spec-{uid}.json",
        devices=tuple(PreparedDevice("n/numa0", d, ("r",), (f"k/c={uid}-{d}",)) for d in devices),
    )


def test_round_trip_and_queries() -> None:
    state = Checkpoint().with_claim(claim("a", "mock0", "mock1")).with_claim(claim("b", "mock2"))
    again = codec.decode(codec.encode(state))
    assert again == state
    assert again.holder_of("mock1") == "a"
    assert again.holder_of("mock3") is None
    assert again.held_devices() == {"mock0": "a", "mock1": "a", "mock2": "b"}
    assert again.without("a").held_devices() == {"mock2": "b"}
    assert again.cdi_specs() == {"spec-a.json": "a", "spec-b.json": "b"}


def _tamper(raw: bytes) -> bytes:
    document = json.loads(raw)
    document["data"]["preparedClaims"]["a"]["devices"][0]["device"] = "mock7"
    return json.dumps(document).encode()


def _bump_version(raw: bytes) -> bytes:
    document = json.loads(raw)
    document["version"] = 99
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda raw: raw[: len(raw) // 2], "not JSON"),
        (_tamper, "checksum mismatch"),
        (_bump_version, "unsupported version"),
        (lambda raw: b'{"kind": "Other"}', "kind"),
        (lambda raw: b"\xff\xfe", "not JSON"),
    ],
    ids=["torn", "edited", "future-version", "wrong-kind", "binary"],
)
def test_corruption_is_detected(mangle: object, reason: str) -> None:
    raw = codec.encode(Checkpoint().with_claim(claim("a", "mock0")))
    with pytest.raises(CheckpointCorruptError, match=reason):
        codec.decode(mangle(raw), path="/x/checkpoint.json")  # type: ignore[operator]
