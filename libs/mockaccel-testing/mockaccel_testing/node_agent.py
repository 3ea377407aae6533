"""Helpers to run the agent against a simulated node: used by its tests, the e2e tests and the benchmark.

Nothing here runs in production; it lives in the package so that tests in
other source roots and tools/bench can share it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from mockaccel_common.simulator.engine import SimulatedNode
from mockaccel_common.simulator.topology import loads_topology
from mockaccel_common.sysfs.reader import scan_devices_sync
from mockaccel_node_agent.adapters.state import CHECKPOINT_FILE
from mockaccel_node_agent.domain.cdi_building import is_our_spec
from mockaccel_node_agent.domain.checkpoint import decode

DRIVER = "mock-accel.example.com"


def topology_toml(node: str, *, pfs: int = 4, numa_nodes: int = 1, total_vfs: int = 2) -> str:
    blocks = [f'[[node]]\nname = "{node}"\n']
    for numa in range(numa_nodes):
        blocks.append(
            f'[[node.pf]]\nnuma_node = {numa}\ncount = {pfs}\nmemory = "16Gi"\n'
            f'total_vfs = {total_vfs}\nvf_memory = "2Gi"\n'
        )
    return "\n".join(blocks)


@dataclass(frozen=True)
class AgentDirs:
    """A short root (Unix socket paths must fit in 107 bytes) with every directory the agent uses."""

    root: Path

    @property
    def sysfs(self) -> Path:
        return self.root / "sys"

    @property
    def plugin(self) -> Path:
        return self.root / "plugin"

    @property
    def registry(self) -> Path:
        return self.root / "registry"

    @property
    def cdi(self) -> Path:
        return self.root / "cdi"

    @property
    def registration_socket(self) -> Path:
        return self.registry / f"{DRIVER}-reg.sock"

    def env(self, node: str, kubeconfig: Path | None, **extra: str) -> dict[str, str]:
        env = {
            "NODE_NAME": node,
            "MOCKACCEL_SYSFS_ROOT": str(self.sysfs),
            "MOCKACCEL_PLUGIN_DIR": str(self.plugin),
            "MOCKACCEL_REGISTRY_DIR": str(self.registry),
            "MOCKACCEL_CDI_DIR": str(self.cdi),
            "MOCKACCEL_HEALTH_PORT": "-1",
            "MOCKACCEL_METRICS_PORT": "-1",
            "MOCKACCEL_LISTEN_HOST": "127.0.0.1",
        }
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        env.update(extra)
        return env

    # --- observing the node's state ----------------------------------------

    def allocated(self) -> set[str]:
        return {d.name for d in scan_devices_sync(self.sysfs).devices if d.allocated}

    def specs(self) -> set[str]:
        return {p.name for p in self.cdi.iterdir() if is_our_spec(p.name)} if self.cdi.is_dir() else set()

    def spec(self, name: str) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.cdi / name).read_text())
        return loaded

    def checkpoint_devices(self) -> dict[str, set[str]]:
        """claim UID → devices, from the checkpoint on disk."""
        path = self.plugin / CHECKPOINT_FILE
        if not path.exists():
            return {}
        checkpoint = decode(path.read_bytes(), path=str(path))
        return {uid: set(claim.device_names) for uid, claim in checkpoint.claims.items()}

    def exclusive_devices(self) -> set[str]:
        """Devices the checkpoint holds exclusively (admin-access devices are shared and never marked)."""
        path = self.plugin / CHECKPOINT_FILE
        if not path.exists():
            return set()
        checkpoint = decode(path.read_bytes(), path=str(path))
        return {d for claim in checkpoint.claims.values() for d in claim.exclusive_device_names}

    def consistent(self) -> list[str]:
        """Why sysfs and the CDI directory disagree with the checkpoint (empty: they agree)."""
        held = self.checkpoint_devices()
        problems = []
        held_devices = self.exclusive_devices()
        if self.allocated() != held_devices:
            problems.append(f"allocated {sorted(self.allocated())} != checkpoint {sorted(held_devices)}")
        from mockaccel_node_agent.domain.cdi_building import spec_file_name

        wanted_specs = {spec_file_name(uid) for uid in held}
        if self.specs() != wanted_specs:
            problems.append(f"CDI specs {sorted(self.specs())} != checkpoint {sorted(wanted_specs)}")
        return problems


def simulated_node(dirs: AgentDirs, node: str, **topology: int) -> SimulatedNode:
    spec = loads_topology(topology_toml(node, **topology)).nodes[0]
    return SimulatedNode.create(dirs.sysfs, spec)


@contextmanager
def agent_dirs(prefix: str = "na-") -> Iterator[AgentDirs]:
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield AgentDirs(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def kubeconfig_for(
    path: Path,
    *,
    server: str,
    ca: str | None = None,
    token: str | None = None,
    client_cert: Mapping[str, str] | None = None,
) -> Path:
    """A kubeconfig file (JSON is YAML) for a server and a token or client certificate."""
    cluster: dict[str, object] = {"server": server}
    if ca:
        cluster["certificate-authority"] = ca
    else:
        cluster["insecure-skip-tls-verify"] = True
    user: dict[str, object] = {}
    if token:
        user["token"] = token
    if client_cert:
        user.update(client_cert)
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "ctx",
    }
    path.write_text(json.dumps(document))
    os.chmod(path, 0o600)
    return path


# --- a fake API server for fault injection (the e2e tests use the real one) ---


def claim_object(
    namespace: str,
    name: str,
    uid: str,
    results: list[tuple[str, str, str, str]] | None,
) -> dict[str, object]:
    """A ResourceClaim as JSON; results are (request, driver, pool, device); None: not allocated."""
    obj: dict[str, object] = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"namespace": namespace, "name": name, "uid": uid},
        "spec": {"devices": {"requests": []}},
    }
    if results is not None:
        obj["status"] = {
            "allocation": {
                "devices": {
                    "results": [{"request": r, "driver": d, "pool": p, "device": dev} for r, d, p, dev in results]
                }
            }
        }
    return obj


class FakeApiServer:
    """Serves GET on ResourceClaims from a dict, over plain HTTP on 127.0.0.1."""

    def __init__(self) -> None:
        self.claims: dict[tuple[str, str], dict[str, object]] = {}
        self.status_override: int | None = None
        self.serves_v1 = True  # False: answer like a server without resource.k8s.io/v1 (plain-text 404)
        self.requests = 0
        app = web.Application()
        app.router.add_get("/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaims/{name}", self._get)
        self._runner = web.AppRunner(app)
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    async def _get(self, request: web.Request) -> web.Response:
        self.requests += 1
        if not self.serves_v1:
            return web.Response(status=404, text="404 page not found\n")
        if self.status_override is not None:
            return web.json_response({"kind": "Status", "code": self.status_override}, status=self.status_override)
        obj = self.claims.get((request.match_info["ns"], request.match_info["name"]))
        if obj is None:
            return web.json_response({"kind": "Status", "code": 404, "reason": "NotFound"}, status=404)
        return web.json_response(obj)

    def add(self, obj: dict[str, object]) -> None:
        meta = obj["metadata"]
        assert isinstance(meta, dict)
        self.claims[(meta["namespace"], meta["name"])] = obj

    async def start(self) -> str:
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()
        return self.url

    async def stop(self) -> None:
        await self._runner.cleanup()
