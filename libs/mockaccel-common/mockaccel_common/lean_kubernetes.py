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
# Imported by kubernetes_asyncio's ``client.configuration`` for one helper (the
# basic-auth header, built only for a kubeconfig with a user name and password)
# and a logger's name. Its ``__init__`` imports every submodule and builds a
# default PoolManager: ~1.6 MiB of resident memory in each service, for nothing.
_DEFERRED_MODULES = ("urllib3",)
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


class DeferredModule(types.ModuleType):
    """A package whose real ``__init__`` runs at the first use of one of its names.

    Its submodules import without it (``__path__`` is the real one). At the
    first attribute that is not there yet, the real package is imported in
    its place and every name is taken over, so whoever bound this object by
    ``import`` sees the whole package from then on.
    """

    def __init__(self, name: str, directory: str) -> None:
        super().__init__(name)
        self.__path__ = [directory]
        self.__file__ = str(Path(directory) / "__init__.py")
        self.__package__ = name

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        real = importlib.import_module(self.__name__)
        self.__dict__.update(real.__dict__)
        return getattr(real, attribute)


def _defer(name: str) -> None:
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return
    sys.modules[name] = DeferredModule(name, next(iter(spec.submodule_search_locations)))


def install() -> bool:
    """Install the lazy packages; True when they are in place."""
    if any(name in sys.modules for name in _LAZY_PACKAGES):
        return False
    for name in _DEFERRED_MODULES:
        _defer(name)
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
    # The top package is lazy too, so its real ``__init__`` (which imports
    # config, then client.ApiClient half-way through config) never runs: a
    # first import may start anywhere, e.g. at client.api_client, without
    # meeting a half-initialised module.
    return True
