"""A typed Settings base: one frozen dataclass per service, loaded from flags and env.

Each field is declared with ``setting(default, env=..., help=..., unit=...)``.
``load()`` reads the environment variable named by the field, then lets a
command-line flag (``--field-name``) override it; defaults live only here.
This is the only module of a service that reads ``os.environ``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self, get_type_hints

from mockaccel_common.errors import SettingsError
from mockaccel_common.logging import LEVELS


def setting(default: Any, *, env: str, help: str, unit: str = "") -> Any:
    """Declare a settings field with its environment variable, documentation and unit."""
    return dataclasses.field(default=default, metadata={"env": env, "help": help, "unit": unit})


def _convert(raw: str, kind: Any, name: str) -> Any:
    optional = False
    if getattr(kind, "__args__", None) and type(None) in kind.__args__:
        optional = True
        kind = next(arg for arg in kind.__args__ if arg is not type(None))
    if optional and raw == "":
        return None
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind is int:
            return int(raw, 10)
        if kind is float:
            return float(raw)
        if kind is Path:
            return Path(raw)
        if kind is str:
            return raw
    except ValueError as exc:
        raise SettingsError(f"{name}: cannot parse {raw!r} as {kind.__name__}") from exc
    raise SettingsError(f"{name}: unsupported settings type {kind!r}")


@dataclasses.dataclass(frozen=True)
class BaseSettings:
    log_level: str = setting("info", env="MOCKACCEL_LOG_LEVEL", help=f"One of {', '.join(LEVELS)}.")
    log_format: str = setting("json", env="MOCKACCEL_LOG_FORMAT", help="json (production) or console.")
    drain_timeout: float = setting(
        10.0, env="MOCKACCEL_DRAIN_TIMEOUT", help="Longest graceful shutdown after SIGTERM.", unit="s"
    )

    def __post_init__(self) -> None:
        if self.log_level not in LEVELS:
            raise SettingsError(f"log_level must be one of {', '.join(LEVELS)}, got {self.log_level!r}")
        if self.log_format not in ("json", "console"):
            raise SettingsError(f"log_format must be json or console, got {self.log_format!r}")
        if self.drain_timeout <= 0:
            raise SettingsError(f"drain_timeout must be positive, got {self.drain_timeout}")

    @classmethod
    def describe(cls) -> list[tuple[str, str, Any, str, str]]:
        """(field, env, default, unit, help) for every setting, for docs and Helm checks."""
        return [
            (f.name, f.metadata["env"], f.default, f.metadata["unit"], f.metadata["help"])
            for f in dataclasses.fields(cls)
        ]

    @classmethod
    def load(cls, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Self:
        environ = os.environ if environ is None else environ
        hints = get_type_hints(cls)
        parser = argparse.ArgumentParser(description=(cls.__doc__ or "").strip().split("\n")[0])
        for f in dataclasses.fields(cls):
            unit = f" [{f.metadata['unit']}]" if f.metadata["unit"] else ""
            # A bare boolean flag (--remove-on-shutdown) means true.
            bare = {"nargs": "?", "const": "true"} if hints[f.name] is bool else {}
            parser.add_argument(
                "--" + f.name.replace("_", "-"),
                dest=f.name,
                default=None,
                help=f"{f.metadata['help']}{unit} (env {f.metadata['env']}, default {f.default!r})",
                **bare,  # type: ignore[arg-type]
            )
        args = parser.parse_args(argv)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = getattr(args, f.name)
            if raw is None:
                raw = environ.get(f.metadata["env"])
            if raw is not None:
                values[f.name] = _convert(raw, hints[f.name], f.name)
        return cls(**values)
