from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from mockaccel_common.errors import SettingsError
from mockaccel_common.settings import BaseSettings, setting


@dataclass(frozen=True)
class Example(BaseSettings):
    root: Path = setting(Path("/sys"), env="EXAMPLE_ROOT", help="a path")
    retries: int = setting(3, env="EXAMPLE_RETRIES", help="a count")
    enabled: bool = setting(False, env="EXAMPLE_ENABLED", help="a switch")


def test_defaults_env_then_flags() -> None:
    assert Example.load([], {}) == Example()
    env = {"EXAMPLE_RETRIES": "5", "EXAMPLE_ROOT": "/tmp/x", "EXAMPLE_ENABLED": "yes"}
    loaded = Example.load(["--retries", "7"], env)
    assert loaded.retries == 7
    assert loaded.root == Path("/tmp/x")
    assert loaded.enabled is True
    assert Example.load(["--enabled"], {}).enabled is True
    assert Example.load(["--enabled", "false"], {"EXAMPLE_ENABLED": "1"}).enabled is False


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {"EXAMPLE_RETRIES": "three"}, "retries"),
        ([], {"EXAMPLE_ENABLED": "maybe"}, "enabled"),
        (["--log-level", "loud"], {}, "log_level"),
        (["--drain-timeout", "0"], {}, "drain_timeout"),
    ],
    ids=["int", "bool", "level", "timeout"],
)
def test_bad_values_are_clear_errors(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Example.load(argv, env)


def test_every_field_is_documented() -> None:
    for name, env, _default, _unit, help_text in Example.describe():
        assert env, name
        assert help_text, name
