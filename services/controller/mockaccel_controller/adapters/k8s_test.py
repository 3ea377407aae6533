from __future__ import annotations

import aiohttp
import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from mockaccel_controller import errors
from mockaccel_controller.adapters.k8s import (
    choose_version,
    device_from_wire,
    device_to_wire,
    stored_from_wire,
    translate_api_error,
)
from mockaccel_controller.domain.reconcile import SliceWrite
from mockaccel_controller.domain.slices import desired_state
from mockaccel_controller.domain.slices_test import pf, vf

DRIVER = "mock-accel.example.com"


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ApiException(status=404), errors.NotFoundError),
        (ApiException(status=409), errors.ConflictError),
        (ApiException(status=410), errors.ConflictError),
        (ApiException(status=429), errors.ApiUnavailableError),
        (ApiException(status=503), errors.ApiUnavailableError),
        (ApiException(status=403), errors.ApiRefusedError),
        (ApiException(status=422), errors.PermanentError),
        (aiohttp.ClientConnectionError("refused"), errors.ApiUnavailableError),
        (TimeoutError(), errors.ApiUnavailableError),
        (ConnectionResetError(), errors.ApiUnavailableError),
    ],
    ids=["404", "409", "410", "429", "503", "403", "422", "connect", "timeout", "reset"],
)
def test_library_errors_map_to_what_the_caller_does_next(exc: BaseException, kind: type[Exception]) -> None:
    assert type(translate_api_error(exc, "op")) is kind


def test_status_message_and_retry_after_are_kept() -> None:
    exc = ApiException(status=429, reason="Too Many Requests")
    exc.body = b'{"kind":"Status","message":"slow down"}'
    exc.headers = {"Retry-After": "3"}  # type: ignore[assignment]  # aiohttp gives a CIMultiDictProxy
    translated = translate_api_error(exc, "list slices")
    assert isinstance(translated, errors.RetryableError)
    assert translated.delay == 3.0
    assert "slow down" in str(translated)


def test_the_error_tree_subclasses_no_library_error() -> None:
    for cls in errors.ControllerError.__subclasses__() + errors.RetryableError.__subclasses__():
        assert not issubclass(cls, ApiException | aiohttp.ClientError | OSError)


@pytest.mark.parametrize(
    ("served", "forced", "chosen"),
    [
        (["v1", "v1beta2", "v1beta1"], "", "v1"),
        (["v1", "v1beta1"], "v1beta1", "v1beta1"),
    ],
    ids=["v1", "forced"],
)
def test_version_choice(served: list[str], forced: str, chosen: str) -> None:
    assert choose_version(served, forced) == chosen


@pytest.mark.parametrize(
    ("served", "forced"),
    [(["v1alpha3"], ""), (["v1"], "v1beta2"), (["v1beta2", "v1beta1"], "")],
    ids=["none", "forced-missing", "no-v1-is-outside-the-matrix"],
)
def test_no_usable_version_is_permanent(served: list[str], forced: str) -> None:
    with pytest.raises(errors.PermanentError):
        choose_version(served, forced)


@pytest.mark.parametrize("version", ["v1", "v1beta2", "v1beta1"])
def test_devices_round_trip_through_each_wire_shape(version: str) -> None:
    parent = pf(0)
    devices = desired_state("n", DRIVER, [parent, vf(parent, 0)]).pools["n/numa0"].slices[0].devices
    for spec in devices:
        wire = device_to_wire(spec, version)
        assert ("basic" in wire) == (version == "v1beta1")
        assert device_from_wire(wire, version) == spec


def test_server_side_forms_and_extra_fields_are_seen() -> None:
    parent = pf(0)
    spec = desired_state("n", DRIVER, [parent]).pools["n/numa0"].slices[0].devices[0]
    wire = device_to_wire(spec, "v1")
    wire["capacity"][f"{DRIVER}/memory"]["value"] = "16384Mi"  # same value, other spelling
    assert device_from_wire(wire, "v1") == spec
    wire["taints"] = [{"key": "k", "effect": "NoSchedule"}]
    assert device_from_wire(wire, "v1").extras == ("taints",)


def test_stored_slice_reads_pool_fields_and_foreign_spec() -> None:
    stored = stored_from_wire(
        {
            "metadata": {"name": "s", "uid": "u", "resourceVersion": "7", "labels": {"driver": DRIVER}},
            "spec": {
                "driver": DRIVER,
                "nodeName": "n",
                "pool": {"name": "n/numa0", "generation": 3, "resourceSliceCount": 2},
                "devices": [],
                "perDeviceNodeSelection": False,
                "sharedCounters": [{"name": "c"}],
            },
        },
        "v1",
    )
    assert (stored.pool, stored.generation, stored.slice_count) == ("n/numa0", 3, 2)
    assert stored.foreign_spec == ("sharedCounters",)
    assert isinstance(SliceWrite("p", 1, 1, (), {}), SliceWrite)
