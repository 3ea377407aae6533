"""`python -m mockaccel_testing.cli up|down|env|serve`: a long-lived loopback cluster.

Why a CLI next to the pytest plugin: developers want to poke at the same control plane
with kubectl and helm. `up` starts a detached `serve` process that owns the control plane
(the same ControlPlane class the tests use) until `down` sends it SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from mockaccel_testing.binaries import KubeBinaries
from mockaccel_testing.control_plane import ControlPlane, ControlPlaneStartError
from mockaccel_testing.kubelet_node import KubeletNode, KubeletNodeStartError, NodeHost, NodeRuntime
from mockaccel_testing.processes import alive, stop_group
from mockaccel_testing.service_process import python_env
from mockaccel_testing.settings import Settings

STATE_FILE = "cluster.json"
PID_FILE = "serve.pid"
SERVE_LOG = "serve.log"


def main(argv: list[str] | None = None) -> int:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="tools/cluster", description=__doc__)
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=(settings.cache_dir / "cluster") if settings.cache_dir else None,
        help="where the cluster state and logs live (default: $MOCKACCEL_CACHE/cluster)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the control plane in the background")
    up.add_argument("--with-node", action="store_true", help="also start a real kubelet node (containerd + kubelet)")
    sub.add_parser("down", help="stop it and remove its state")
    sub.add_parser("env", help="print shell exports for kubectl and helm")
    serve = sub.add_parser("serve", help="run the control plane in the foreground (used by up)")
    serve.add_argument("--with-node", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.state_dir is None:
        parser.error("no --state-dir and neither MOCKACCEL_CACHE nor HOME is set")
    state: Path = args.state_dir.resolve()
    command: str = args.command
    if command == "up":
        return _up(settings, state, with_node=args.with_node)
    if command == "down":
        return _down(state)
    if command == "env":
        return _env(state)
    return _serve(settings, state, with_node=args.with_node)


def _up(settings: Settings, state: Path, *, with_node: bool) -> int:
    if _running_pid(state) is not None and (state / STATE_FILE).exists():
        print(f"# already running (state in {state})", file=sys.stderr)
        return _env(state)
    KubeBinaries.locate(settings.kube_bin)  # fail here, with the provisioning hint
    if with_node:
        NodeRuntime.from_settings(settings)
    for child in _recorded_pids(state).values():  # leftovers of a serve that was killed
        stop_group(child)
    _clean_up_node(state)
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    with (state / SERVE_LOG).open("ab") as log:
        serve = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mockaccel_testing.cli",
                "--state-dir",
                str(state),
                "serve",
                *(["--with-node"] if with_node else []),
            ],
            stdin=subprocess.DEVNULL,
            env=python_env(inherit=True),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (state / PID_FILE).write_text(f"{serve.pid}\n")
    while not (state / STATE_FILE).exists():
        if serve.poll() is not None:
            print((state / SERVE_LOG).read_text(errors="replace"), file=sys.stderr)
            print(f"# control plane failed to start; logs in {state}", file=sys.stderr)
            return 1
        time.sleep(0.2)
    print(f"# control plane up; logs in {state / 'plane' / 'logs'}", file=sys.stderr)
    return _env(state)


def _serve(settings: Settings, state: Path, *, with_node: bool) -> int:
    plane = ControlPlane.from_settings(settings, state / "plane")
    node = KubeletNode.from_settings(settings, plane, state / "node") if with_node else None
    # Block the signals before starting so a `down` during start-up is not lost.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    try:
        plane.start()
    except ControlPlaneStartError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        if node is not None:
            node.start()
        info = {**plane.describe(), "kube_bin": str(settings.kube_bin)}
        if node is not None:
            info["node"] = node.describe()
            info["pids"] = {
                **{p.name: p.pid for p in plane.processes},
                **{f"node-{p.name}": p.pid for p in node.processes},
            }
        tmp = state / f"{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        tmp.replace(state / STATE_FILE)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    except KubeletNodeStartError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        if node is not None:
            node.stop()
        plane.stop()
    return 0


def _down(state: Path) -> int:
    pid = _running_pid(state)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    # Whatever the serve process could not stop: every component has its own group.
    for child in _recorded_pids(state).values():
        stop_group(child)
    _clean_up_node(state)
    shutil.rmtree(state, ignore_errors=True)
    print(f"# control plane down; removed {state}", file=sys.stderr)
    return 0


def _env(state: Path) -> int:
    try:
        info = json.loads((state / STATE_FILE).read_text())
    except FileNotFoundError:
        print(f"# no cluster state in {state}; run tools/cluster up", file=sys.stderr)
        return 1
    print(f"export KUBECONFIG={shlex.quote(info['kubeconfig'])}")
    print(f"export MOCKACCEL_KUBE_BIN={shlex.quote(info['kube_bin'])}")
    print(f'export PATH={shlex.quote(info["kube_bin"])}:"$PATH"')
    if "node" in info:
        node = info["node"]
        logs = f"{node['work_dir']}/logs"
        print(f"# real node {node['name']} (image {node['busybox_image']}); logs in {logs}", file=sys.stderr)
        # What installing the chart on that node needs (tools/demo uses them).
        exports = {
            "MOCKACCEL_NODE_NAME": node["name"],
            "MOCKACCEL_NODE_KUBELET_DIR": node.get("root_dir", ""),
            "MOCKACCEL_NODE_CDI_DIR": node["cdi_spec_dir"],
            "MOCKACCEL_NODE_CONTAINERD_SOCKET": node["containerd_socket"],
            "MOCKACCEL_NODE_CTR": node.get("ctr", ""),
        }
        for key, value in exports.items():
            print(f"export {key}={shlex.quote(str(value))}")
    return 0


def _clean_up_node(state: Path) -> None:
    """Pods, mounts, cgroups and the bridge of a node whose serve process was killed."""
    try:
        node = json.loads((state / STATE_FILE).read_text()).get("node")
    except (FileNotFoundError, ValueError):
        node = None
    if node:
        NodeHost(Path(node["work_dir"]), node["name"]).clean_up()
    elif (state / "node").is_dir():  # killed during start-up, before the state was written
        NodeHost(state / "node", KubeletNode.DEFAULT_NAME).clean_up()


def _running_pid(state: Path) -> int | None:
    try:
        pid = int((state / PID_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if alive(pid) else None


def _recorded_pids(state: Path) -> dict[str, int]:
    try:
        pids = json.loads((state / STATE_FILE).read_text()).get("pids", {})
    except (FileNotFoundError, ValueError):
        return {}
    return {str(k): int(v) for k, v in pids.items() if v}


if __name__ == "__main__":
    sys.exit(main())
