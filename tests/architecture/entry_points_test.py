"""Every service starts through the one shared main(): a bad setting is one line on stderr and exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mockaccel_testing.service_process import python_env

SERVICES = ("mockaccel_controller", "mockaccel_node_agent", "mockaccel_vfio_server")


@pytest.mark.parametrize("module", SERVICES)
@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--log-level", "loud"], {}, "log_level must be one of"),
        ([], {"MOCKACCEL_DRAIN_TIMEOUT": "soon"}, "drain_timeout: cannot parse 'soon' as float"),
    ],
    ids=["bad-flag-value", "bad-env-value"],
)
def test_a_bad_setting_is_one_line_and_exit_2(module: str, args: list[str], env: dict[str, str], message: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", module, *args, "/tmp/unused.sock"] if module.endswith("vfio_server") else
        [sys.executable, "-m", module, "--node-name", "n", *args],
        capture_output=True, text=True, env=python_env(env), timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1, run.stderr
    prog = module.replace("_", "-")
    assert run.stderr.startswith(f"{prog}: error: ")
    assert message in run.stderr
    assert run.stdout == ""
