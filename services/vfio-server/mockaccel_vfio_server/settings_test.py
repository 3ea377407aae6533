from __future__ import annotations

import uuid

import pytest

from mockaccel_common.errors import SettingsError
from mockaccel_vfio_server.settings import Settings

ENV = {"MOCKACCEL_LIBVFIO_USER_PREFIX": "/opt/vfu"}


def test_original_style_command_line() -> None:
    s = Settings.load(
        ["-v", "-u", "12345678-1234-5678-1234-567812345678", "-m", "8Gi", "--total-vfs", "3", "/run/pf0.sock"], ENV
    )
    assert (s.socket_path, s.log_level, s.memory_bytes, s.total_vfs) == ("/run/pf0.sock", "debug", 8 << 30, 3)
    assert s.device_uuid == uuid.UUID("12345678-1234-5678-1234-567812345678")


def test_flag_values_are_not_taken_for_the_socket() -> None:
    s = Settings.load(["--total-vfs", "2", "--vf-memory", "1Gi", "/run/x.sock"], ENV)
    assert (s.socket_path, s.total_vfs, s.vf_memory_bytes) == ("/run/x.sock", 2, 1 << 30)


def test_default_uuid_is_stable_per_socket_path() -> None:
    a = Settings.load(["/run/a.sock"], ENV).device_uuid
    assert a == Settings.load(["/run/a.sock"], ENV).device_uuid
    assert a != Settings.load(["/run/b.sock"], ENV).device_uuid


def test_sizes_are_kubernetes_quantities() -> None:
    """One grammar everywhere (mockaccel_common.quantity): G is decimal, Gi binary."""
    s = Settings.load(["-m", "16G", "--vf-memory", "2Gi", "/s"], ENV)
    assert (s.memory_bytes, s.vf_memory_bytes) == (16 * 10**9, 2 << 30)


def test_environment_is_read() -> None:
    s = Settings.load([], {**ENV, "MOCKACCEL_SOCKET": "/run/e.sock", "MOCKACCEL_MEMORY": "2048Mi"})
    assert (s.socket_path, s.memory_bytes) == ("/run/e.sock", 2 << 30)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-m", "16X", "/s"], "memory"),
        (["-m", "0", "/s"], "memory"),
        (["--vf-memory", "99999999999999999999Ti", "/s"], "vf_memory"),
        (["-u", "MOCK-0000-0001", "/s"], "not a UUID"),
        (["--total-vfs", "8", "/s"], "0..7"),
        ([], "SOCKET"),
    ],
    ids=["garbage-size", "zero-size", "overflow", "ascii-uuid", "too-many-vfs", "no-socket"],
)
def test_bad_settings(argv: list[str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.load(argv, ENV)


def test_libvfio_user_prefix_is_required() -> None:
    with pytest.raises(SettingsError, match="tools/provision/libvfio-user.sh"):
        Settings.load(["/s"], {})
