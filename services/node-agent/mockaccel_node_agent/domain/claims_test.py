from __future__ import annotations

import pytest

from mockaccel_common.errors import MockaccelError
from mockaccel_common.model import pool_name
from mockaccel_node_agent import errors
from mockaccel_node_agent.domain.claims import (
    AllocationResult,
    ClaimAllocation,
    ClaimRef,
    base_request,
    check_allocation,
    wanted_devices,
)

D = "mock-accel.example.com"


def test_only_our_driver_one_entry_per_device_and_parent_requests() -> None:
    allocation = ClaimAllocation(
        uid="u",
        allocated=True,
        results=(
            AllocationResult("gpu/small", D, "n/numa0", "mock0"),
            AllocationResult("nic", "net.example.com", "n", "eth0"),
            AllocationResult("other", D, "n/numa0", "mock0"),
            AllocationResult("b", D, "n/numa1", "mock4"),
        ),
    )
    wanted = wanted_devices(allocation, D)
    assert [(w.device, w.request_names) for w in wanted] == [("mock0", ("gpu", "other")), ("mock4", ("b",))]


def test_claim_checks() -> None:
    ref = ClaimRef("ns", "u1", "c")
    with pytest.raises(errors.ClaimReplacedError):
        check_allocation(ref, ClaimAllocation(uid="u2", allocated=True))
    with pytest.raises(errors.ClaimNotAllocatedError):
        check_allocation(ref, ClaimAllocation(uid="u1", allocated=False))
    with pytest.raises(errors.NoDevicesError):
        wanted_devices(ClaimAllocation(uid="u1", allocated=True), D)
    with pytest.raises(errors.InvalidRequestError, match="empty namespace, name"):
        ClaimRef("", "u", "").validate()


def test_from_object_reads_the_v1_json() -> None:
    obj = {
        "metadata": {"uid": "u"},
        "status": {"allocation": {"devices": {"results": [{"request": "r", "driver": D, "pool": "p", "device": "d"}]}}},
    }
    assert ClaimAllocation.from_object(obj).results == (AllocationResult("r", D, "p", "d"),)
    assert not ClaimAllocation.from_object({"metadata": {"uid": "u"}, "status": {}}).allocated


def test_names() -> None:
    assert base_request("a/b") == "a"
    assert base_request("a") == "a"
    assert pool_name("n", 1) == "n/numa1"
    assert pool_name("n", None) == "n/numa-none"


def test_error_tree_subclasses_no_library_error() -> None:
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, Exception)]
    for cls in classes:
        if cls is MockaccelError:
            continue
        assert issubclass(cls, MockaccelError), cls
        for base in cls.__mro__:
            assert base.__module__ in ("builtins", errors.__name__, "mockaccel_common.errors"), (cls, base)
