"""The local-emulation stack of deploy/compose, driven as a user drives it.

Why: docs/local-emulation.md promises that `docker compose up --wait` gives a usable
cluster with mock accelerators and that `docker compose down -v` leaves nothing behind;
the e2e test checks exactly that, through the engine's Docker API (podman here) and the
Compose v2 binary tools/provision/compose.sh builds (run standalone, so no docker CLI
plugin directory is needed).

A test's stack cannot collide with anything else on the machine: its own project name
(so its own containers, volumes and network), a free host port for the API server, a
/24 no route or engine network uses, and its own directory for the kubeconfig. The
project name carries the test process's PID: a run that was killed before its teardown
(Pants restarts a test whose sources change under it) leaves a stack whose owner is
gone, and the next run removes it (reap_orphans). Under
podman, which runs no healthchecks without systemd, the stack's healthchecks are driven
by `tools/compose health-driver`, the same loop `tools/compose up` starts for users.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testcontainers.core.docker_client import DockerClient

from mockaccel_testing import net
from mockaccel_testing.processes import alive

COMPOSE_FILE = Path("deploy/compose/compose.yaml")
TOOL = Path("tools/compose")
COMPOSE_PLUGIN_ENV = "MOCKACCEL_COMPOSE_PLUGIN"
CLUSTER_IMAGE_ENV = "MOCKACCEL_CLUSTER_IMAGE"
PROJECT_LABEL = "com.docker.compose.project"
PROJECT_PREFIX = "mockaccel-e2e-"
PROVISION_HINT = "run tools/provision/compose.sh and `tools/compose build` (tools/test does both)"
# Where the simulated node's /sys lives inside a node container (mock-accel-cluster node).
SIM_ROOT = "/var/lib/mock-accel/sys"
NETWORK_POOL = ipaddress.IPv4Network("172.30.0.0/16")


class ComposeNotProvisionedError(RuntimeError):
    """The compose binary or the cluster image is not configured."""


@dataclass
class ComposeStack:
    """One project of deploy/compose/compose.yaml with settings of its own."""

    compose: Path
    image: str
    project: str
    out_dir: Path
    api_port: int
    network_prefix: str  # first three octets of the stack's /24
    docker_host: str
    _driver: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def for_test(cls, out_dir: Path, environ: Mapping[str, str] = os.environ) -> ComposeStack:
        keys = (COMPOSE_PLUGIN_ENV, CLUSTER_IMAGE_ENV, "DOCKER_HOST")
        compose, image, docker_host = (environ.get(k, "") for k in keys)
        missing = [k for k in keys if not environ.get(k)]
        if missing:
            raise ComposeNotProvisionedError(f"{', '.join(missing)} not set: {PROVISION_HINT}")
        if not Path(compose).is_file():
            raise ComposeNotProvisionedError(f"{compose} missing: {PROVISION_HINT}")
        (port,) = net.free_ports(1)
        out_dir.mkdir(parents=True, exist_ok=True)
        return cls(
            compose=Path(compose),
            image=image,
            project=f"{PROJECT_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:6]}",
            out_dir=out_dir.resolve(),
            api_port=port,
            network_prefix=_free_network_prefix(),
            docker_host=docker_host,
        )

    @property
    def kubeconfig(self) -> Path:
        return self.out_dir / "kubeconfig"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DOCKER_HOST": self.docker_host,
            "COMPOSE_PROJECT_NAME": self.project,
            "MOCKACCEL_CLUSTER_IMAGE": self.image,
            "MOCKACCEL_API_PORT": str(self.api_port),
            "MOCKACCEL_COMPOSE_NET": self.network_prefix,
            "MOCKACCEL_COMPOSE_OUT": str(self.out_dir),
        }

    # -- commands ----------------------------------------------------------------------

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`docker compose -f compose.yaml -p PROJECT ARGS` (the standalone binary)."""
        argv = [str(self.compose), "-f", str(COMPOSE_FILE.resolve()), "-p", self.project, *args]
        result = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise ComposeCommandError(args, result)
        return result

    def up(self) -> float:
        """`up --wait`; seconds it took. Starts the health driver first when the engine needs it."""
        if self.engine_is_podman():
            self.start_health_driver()
        started = time.monotonic()
        self.run("up", "--wait", "--wait-timeout", "900", timeout=960)
        return time.monotonic() - started

    def down(self) -> float:
        """`down -v --remove-orphans`; seconds it took. Stops the health driver afterwards."""
        started = time.monotonic()
        try:
            self.run("down", "-v", "--remove-orphans", "--timeout", "10", timeout=300)
        finally:
            self.stop_health_driver()
        return time.monotonic() - started

    def exec(self, service: str, *argv: str) -> str:
        """Run a command in a running service (no TTY); its stdout."""
        return self.run("exec", "-T", service, *argv, timeout=60).stdout

    def milestones(self) -> list[str]:
        """The roles' own progress lines (``[mock-accel-cluster ROLE] …``), oldest first, timestamped."""
        logs = self.run("logs", "--no-color", "--no-log-prefix", "--timestamps", timeout=120).stdout
        return sorted(line for line in logs.splitlines() if "[mock-accel-cluster " in line)

    def diagnostics(self) -> str:
        """`ps` and the last log lines of every service, for a failure report."""
        ps = self.run("ps", "-a", check=False, timeout=60)
        logs = self.run("logs", "--no-color", "--tail", "40", check=False, timeout=120)
        return f"--- compose ps ---\n{ps.stdout}{ps.stderr}\n--- compose logs (tail) ---\n{logs.stdout}{logs.stderr}"

    # -- engine ------------------------------------------------------------------------

    def reap_orphans(self) -> list[str]:
        """`down -v` every test stack whose owning process is gone; the projects removed."""
        client = self._client()
        try:
            projects = {c.labels.get(PROJECT_LABEL, "") for c in client.containers.list(all=True)}
        finally:
            client.close()
        reaped = []
        for project in sorted(p for p in projects if p.startswith(PROJECT_PREFIX) and p != self.project):
            pid = project.removeprefix(PROJECT_PREFIX).split("-", 1)[0]
            if pid.isdigit() and not alive(int(pid)):
                orphan = ComposeStack(self.compose, self.image, project, self.out_dir, 0, "0.0.0", self.docker_host)
                orphan.run("down", "-v", "--remove-orphans", "--timeout", "5", timeout=300, check=False)
                reaped.append(project)
        return reaped

    def _client(self) -> Any:
        """A docker SDK client on DOCKER_HOST (through testcontainers, which brings the SDK)."""
        return _docker_client()

    def engine_is_podman(self) -> bool:
        client = self._client()
        try:
            components = client.version().get("Components") or []
        finally:
            client.close()
        return any("podman" in str(c.get("Name", "")).lower() for c in components)

    def leftovers(self) -> dict[str, list[str]]:
        """The project's containers, volumes and networks the engine still has."""
        label = {"label": f"{PROJECT_LABEL}={self.project}"}
        client = self._client()
        try:
            return {
                "containers": [c.name for c in client.containers.list(all=True, filters=label)],
                "volumes": [v.name for v in client.volumes.list(filters=label)],
                "networks": [n.name for n in client.networks.list(filters=label)],
            }
        finally:
            client.close()

    # -- health driver (podman) ------------------------------------------------------

    def start_health_driver(self) -> None:
        if self._driver is not None:
            return
        self._driver = subprocess.Popen(
            [str(TOOL.resolve()), "health-driver"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop_health_driver(self) -> None:
        if self._driver is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._driver.pid, signal.SIGTERM)
        self._driver.wait(timeout=30)
        self._driver = None


class ComposeCommandError(RuntimeError):
    def __init__(self, args: Sequence[str], result: subprocess.CompletedProcess[str]) -> None:
        command = " ".join(args)
        super().__init__(f"docker compose {command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        self.result = result


def _docker_client() -> Any:
    return DockerClient().client


def _free_network_prefix() -> str:
    """Three octets of a /24 in 172.30.0.0/16 that no host address or engine network uses."""
    found: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    addresses = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    routes = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True, check=True).stdout
    for word in (addresses + routes).split():
        with contextlib.suppress(ValueError):
            found.append(ipaddress.ip_network(word, strict=False))
    client = _docker_client()
    try:
        for network in client.networks.list():
            for config in (network.attrs.get("IPAM") or {}).get("Config") or []:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    found.append(ipaddress.ip_network(config["Subnet"], strict=False))
    finally:
        client.close()
    used = [n for n in found if isinstance(n, ipaddress.IPv4Network)]
    candidates = list(NETWORK_POOL.subnets(new_prefix=24))
    random.shuffle(candidates)
    for candidate in candidates:
        if not any(candidate.overlaps(u) for u in used):
            return str(candidate.network_address).rsplit(".", 1)[0]
    raise RuntimeError(f"no free /24 in {NETWORK_POOL} for the compose network")
