from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


_names = st.text(min_size=1, max_size=12)
_devices = st.builds(
    PreparedDevice,
    pool=_names,
    device=_names,
    request_names=st.lists(_names, max_size=3).map(tuple),
    cdi_device_ids=st.lists(_names, max_size=3).map(tuple),
    admin_access=st.booleans(),
)
_claims = st.dictionaries(
    _names,
    st.tuples(_names, _names, _names, st.lists(_devices, max_size=4).map(tuple)),
    max_size=6,
)


@given(_claims)
def test_encoding_is_the_canonical_json_of_the_document(entries: dict[str, Any]) -> None:
    state = Checkpoint(
        {
            uid: PreparedClaim(ref=ClaimRef(namespace, uid, name), cdi_spec=spec, devices=devices)
            for uid, (namespace, name, spec, devices) in entries.items()
        }
    )
    raw = codec.encode(state)
    document = json.loads(raw)
    # Assembled claim by claim, the bytes are those of encoding the whole document with sorted keys.
    assert raw == json.dumps(document, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    assert document["checksum"] == codec._checksum(document["data"])
    assert codec.decode(raw) == state
