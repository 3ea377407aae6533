from __future__ import annotations

from pathlib import Path

from mockaccel_common.plugin_socket import dra_socket, dra_sockets


def test_the_agent_names_and_the_controller_finds_the_same_sockets(tmp_path: Path) -> None:
    served = [dra_socket(tmp_path), dra_socket(tmp_path, "0f1e2d3c-aaaa-bbbb-cccc-000000000001")]
    for path in served:
        path.touch()
    (tmp_path / "checkpoint.json").touch()
    (tmp_path / "serialize.lock").touch()
    assert dra_sockets(tmp_path) == sorted(served)


def test_a_missing_directory_has_no_sockets(tmp_path: Path) -> None:
    assert dra_sockets(tmp_path / "absent") == []
