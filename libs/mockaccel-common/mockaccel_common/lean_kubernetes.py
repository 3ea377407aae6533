"""Load kubernetes_asyncio without importing its ~1,600 generated modules up front.

``kubernetes_asyncio.client`` imports every API class and every model at
import time: about 37 MiB of resident memory that a per-node daemon, which
uses two APIs and a dozen models, never needs; the top package also imports
``dynamic``, ``stream`` and ``utils`` (and through them yaml's loaders for
manifests), which the services never use. ``install()`` puts lazy packages in
their place before anything imports them: each one reads the names its real
``__init__.py`` exports (the ``from <module> import <Name>`` and
``import <module> as <name>`` lines, parsed as text, not executed) and
imports a name's module the first time the name is used. Behaviour is
unchanged; only *when* a module is imported differs.

``kubernetes_asyncio.client.configuration`` also imports urllib3 (for one
helper, basic-auth headers, that the services never call), and urllib3
imports ``importlib.metadata`` and with it csv, zipfile and email: 2 MiB of
resident memory and ~60 ms of every start. ``install()`` puts a stand-in in
its place that imports the real urllib3 the first time anything uses it.

Call it first thing in a service's ``__main__``, before anything imports
kubernetes_asyncio. It does nothing if the package is already imported, or
not installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import types
from pathlib import Path
from typing import Any

_LAZY_PACKAGES = (
    "kubernetes_asyncio",
    "kubernetes_asyncio.client",
    "kubernetes_asyncio.client.api",
    "kubernetes_asyncio.client.models",
)
_ON_FIRST_USE = ("urllib3",)
_EXPORT = re.compile(r"^from (kubernetes_asyncio\.[\w.]+) import (\w+)\s*$", re.MULTILINE)
_SUBMODULE = re.compile(r"^import (kubernetes_asyncio\.\w+) as (\w+)\s*$", re.MULTILINE)
_DUNDER = re.compile(r"^(__\w+__) = \"([^\"]*)\"\s*$", re.MULTILINE)  # __version__ = "36.1.0"


class LazyPackage(types.ModuleType):
    """A package whose exported names and submodules are imported on first use."""

    def __init__(self, name: str, directory: Path, exports: dict[str, str]) -> None:
        super().__init__(name)
        self.__path__ = [str(directory)]
        self.__file__ = str(directory / "__init__.py")
        self.__package__ = name
        self._lazy_exports = exports

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        module_name = self._lazy_exports.get(attribute)
        try:
            if module_name is not None:
                value = getattr(importlib.import_module(module_name), attribute)
            else:
                value = importlib.import_module(f"{self.__name__}.{attribute}")
        except ModuleNotFoundError as exc:
            raise AttributeError(f"module {self.__name__!r} has no attribute {attribute!r}") from exc
        setattr(self, attribute, value)
        return value

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._lazy_exports))


class OnFirstUse(types.ModuleType):
    """A module imported for real the first time one of its names (or submodules) is used.

    The stand-in leaves ``sys.modules`` then, so later imports get the real
    module; a name looked up on the stand-in afterwards is the real module's.
    """

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__") and attribute != "__path__":  # __path__: a submodule is imported
            raise AttributeError(attribute)
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attribute)


def install() -> bool:
    """Install the lazy packages; True when they are in place."""
    if any(name in sys.modules for name in _LAZY_PACKAGES):
        return False
    spec = importlib.util.find_spec("kubernetes_asyncio")
    if spec is None or not spec.submodule_search_locations:
        return False
    root = Path(next(iter(spec.submodule_search_locations)))
    for name in _LAZY_PACKAGES:
        directory = root.joinpath(*name.split(".")[1:])
        source = (directory / "__init__.py").read_text(encoding="utf-8")
        exports = {symbol: module for module, symbol in _EXPORT.findall(source)}
        sys.modules[name] = package = LazyPackage(name, directory, exports)
        # The top package's ``import kubernetes_asyncio.config as config``
        # lines: submodules, found by the attribute fallback on first use.
        if submodules := [alias for _module, alias in _SUBMODULE.findall(source)]:
            package.__dict__["__all__"] = submodules
        package.__dict__.update(_DUNDER.findall(source))
    for name in _ON_FIRST_USE:
        if name not in sys.modules and importlib.util.find_spec(name) is not None:
            sys.modules[name] = OnFirstUse(name)
    # The top package is lazy too, so its real ``__init__`` (which imports
    # config, then client.ApiClient half-way through config) never runs: a
    # first import may start anywhere, e.g. at client.api_client, without
    # meeting a half-initialised module.
    return True
