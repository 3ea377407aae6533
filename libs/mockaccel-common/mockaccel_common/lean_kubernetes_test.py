"""The lazy packages must behave like the eager ones; each check runs in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def run(code: str) -> str:
    env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_client_names_resolve_lazily_and_models_deserialize() -> None:
    out = run(
        """
        import asyncio, sys
        from mockaccel_common import lean_kubernetes
        assert lean_kubernetes.install()
        from kubernetes_asyncio import config
        from kubernetes_asyncio.client import ApiClient, Configuration, ResourceV1Api
        from kubernetes_asyncio.client.exceptions import ApiException
        loaded = [m for m in sys.modules if m.startswith("kubernetes_asyncio.client.models.")]

        async def deserialize():
            async with ApiClient(Configuration()) as client:
                return client._ApiClient__deserialize({"metadata": {"name": "n1"}}, "V1Node")

        node = asyncio.run(deserialize())
        print(len(loaded), type(node).__name__, node.metadata.name, ResourceV1Api.__name__)
        """
    )
    loaded, kind, name, api = out.split()
    assert int(loaded) < 50  # instead of all ~770
    assert (kind, name, api) == ("V1Node", "n1", "ResourceV1Api")


def test_install_is_a_no_op_once_imported() -> None:
    out = run(
        """
        import kubernetes_asyncio.client
        from mockaccel_common import lean_kubernetes
        print(lean_kubernetes.install())
        """
    )
    assert out.strip() == "False"


def test_top_package_is_lazy_and_keeps_its_metadata() -> None:
    out = run(
        """
        import sys
        from mockaccel_common import lean_kubernetes
        assert lean_kubernetes.install()
        import kubernetes_asyncio
        from kubernetes_asyncio.client.api_client import ApiClient  # a first import deep in the package
        from kubernetes_asyncio import config, watch
        unused = [m for m in ("dynamic", "stream", "utils") if f"kubernetes_asyncio.{m}" in sys.modules]
        from kubernetes_asyncio.dynamic import discovery  # reads the top package's __version__
        print(kubernetes_asyncio.__version__ != "", ",".join(unused) or "-", callable(config.load_kube_config))
        print(sorted(kubernetes_asyncio.__all__) == ["client", "config", "dynamic", "stream", "utils", "watch"])
        """
    )
    assert out.split() == ["True", "-", "True", "True"]


def test_urllib3_is_imported_only_when_used() -> None:
    out = run(
        """
        import sys
        from mockaccel_common import lean_kubernetes
        assert lean_kubernetes.install()
        from kubernetes_asyncio import config
        from kubernetes_asyncio.client import ApiClient, Configuration
        print("importlib.metadata" in sys.modules, "urllib3.util" in sys.modules)
        headers = Configuration(username="u", password="p").get_basic_auth_token()  # urllib3.util.make_headers
        import urllib3.util.retry  # a submodule, once the real package is in place
        print(headers.startswith("Basic "), type(sys.modules["urllib3"]).__name__, callable(urllib3.util.retry.Retry))
        """
    )
    assert out.split() == ["False", "False", "True", "module", "True"]


def test_a_submodule_import_through_the_stand_in_gets_the_real_package() -> None:
    out = run(
        """
        import sys
        from mockaccel_common import lean_kubernetes
        assert lean_kubernetes.install()
        from urllib3.util import make_headers
        import urllib3
        print(type(urllib3).__name__, make_headers(basic_auth="u:p")["authorization"].startswith("Basic "))
        """
    )
    assert out.split() == ["module", "True"]
