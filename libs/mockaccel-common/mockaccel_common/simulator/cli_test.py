from __future__ import annotations

import json
from pathlib import Path

import pytest

from mockaccel_common.simulator.cli import main

TOPOLOGY = '[[node]]\nname = "n"\n[[node.pf]]\nnuma_node = 1\ntotal_vfs = 3\n'


@pytest.fixture
def root(tmp_path: Path) -> Path:
    topology = tmp_path / "topo.toml"
    topology.write_text(TOPOLOGY)
    assert main(["create", "--topology", str(topology), "--node", "n", "--root", str(tmp_path / "sys")]) == 0
    return tmp_path / "sys"


def test_create_write_health_show(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["write", "--root", str(root), "mock0", "sriov_numvfs", "2"]) == 0
    assert main(["health", "--root", str(root), "mock0v1", "unhealthy"]) == 0
    capsys.readouterr()
    assert main(["show", "--root", str(root)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in shown["devices"]] == ["mock0", "mock0v0", "mock0v1"]
    assert shown["devices"][2]["status"] == "0x00000006"
    assert shown["devices"][0]["numa_node"] == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["write", "mock0", "sriov_numvfs", "9"], "TotalVFs is 3"),
        (["write", "mock5", "status", "1"], "no such device mock5"),
        (["remove", "mock0v0"], "is a VF"),
    ],
    ids=["range", "unknown-device", "remove-vf"],
)
def test_errors_exit_1_with_one_line(
    root: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([argv[0], "--root", str(root), *argv[1:]]) == 1
    assert message in capsys.readouterr().err


def test_bad_topology_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    topology = tmp_path / "topo.toml"
    topology.write_text("[[node]]\nname = 'n'\n[[node.pf]]\ntotal_vfs = 9\n")
    assert main(["create", "--topology", str(topology), "--node", "n", "--root", str(tmp_path / "s")]) == 1
    assert "outside 0..7" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
