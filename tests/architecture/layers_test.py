"""The layering contracts of importlinter.ini hold for the whole monorepo."""

from __future__ import annotations

from pathlib import Path

from importlinter.cli import lint_imports

CONFIG = Path(__file__).with_name("importlinter.ini")


def test_import_contracts_hold() -> None:
    assert lint_imports(config_filename=str(CONFIG)) == 0
