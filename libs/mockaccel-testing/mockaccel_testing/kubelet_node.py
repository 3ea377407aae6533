"""A real kubelet node: containerd and kubelet on this machine, joined to a ControlPlane.

Why: fake Nodes (nodes.py) are enough for scheduling, but running pods, CDI injection,
the kubelet plugin registration and `kubectl logs` need a kubelet and a container runtime.

Everything the node writes lives under `work_dir`: containerd's root and state (pod
network namespaces included, `netns_mounts_under_state_dir`), kubelet's root dir with its
`plugins` and `plugins_registry` dirs, CDI specs, the CNI config and IPAM state, pod logs.
Pods run in a cgroup root of their own (`/mockaccel/<node>-<hash>`), so stopping kills whatever
is left in it. What cannot be private: the CNI bridge (a host link, removed on stop),
kubelet's `/var/log/containers` symlinks (a fixed path; ours are removed on stop) and the
shim sockets in `/run/containerd/s` (named by a hash of our socket address). The CNI
network does no masquerading and maps no ports, and kubelet runs with
`makeIPTablesUtilChains: false`, so nothing adds iptables rules.

The node IP is the machine's own address (the default route's source): kubelet rejects
loopback node IPs, and the API server dials the node IP for `kubectl logs`. kubelet
serves there with client-certificate authentication against the cluster CA only.

Every process runs under ManagedProcess (own process group, `setpriv --pdeathsig KILL`).
containerd's shims leave its group by design; stop() finds them by their `-address`.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mockaccel_testing import net, pki
from mockaccel_testing.control_plane import ControlPlane
from mockaccel_testing.kubeconfig import write_kubeconfig
from mockaccel_testing.processes import ManagedProcess, ProcessGroupOwner
from mockaccel_testing.settings import NODE_RUNTIME_ENV, Settings

LOG_TAIL_LINES = 40
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
CGROUP_FS = Path("/sys/fs/cgroup")
KUBELET_ROOT_BASE = Path("/run/mak")  # see NodeHost.kubelet_root_dir
CONTAINER_LOG_LINKS = Path("/var/log/containers")
# Keeps other tests' pods (meant for fake Nodes) off a real node in a shared session;
# pods for the node tolerate it (see the pytest fixture).
REAL_NODE_TAINT: Mapping[str, str] = {"key": "mockaccel.test/real-node", "effect": "NoSchedule"}
# The image deploy/examples run: node-runtime.sh's busybox, tagged with a stable name on import.
EXAMPLES_BUSYBOX_IMAGE = "localhost/mock-accel-busybox:latest"
PROVISION_HINT = "run tools/provision/all.sh (or node-runtime.sh) and source the env file it prints"


class NodeRuntimeNotFoundError(RuntimeError):
    """node-runtime.sh's outputs are not configured."""


class KubeletNodeStartError(RuntimeError):
    """The node did not become Ready; the message carries the component log tails."""


@dataclass(frozen=True)
class NodeRuntime:
    """What tools/provision/node-runtime.sh and kubernetes.sh provisioned."""

    kubelet: Path
    containerd_bin: Path  # containerd, ctr, containerd-shim-runc-v2
    runc: Path
    cni_bin_dir: Path
    pause_image: str
    pause_image_archive: Path
    busybox_image: str
    busybox_image_archive: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> NodeRuntime:
        values = settings.node_runtime
        missing = [NODE_RUNTIME_ENV[k] for k in NODE_RUNTIME_ENV if not values.get(k)]
        if settings.kube_bin is None:
            missing.insert(0, "MOCKACCEL_KUBE_BIN")
        if missing:
            raise NodeRuntimeNotFoundError(f"{', '.join(missing)} not set: {PROVISION_HINT}")
        assert settings.kube_bin is not None
        runtime = cls(
            kubelet=settings.kube_bin / "kubelet",
            containerd_bin=Path(values["CONTAINERD_BIN"]),
            runc=Path(values["RUNC"]),
            cni_bin_dir=Path(values["CNI_BIN_DIR"]),
            pause_image=values["PAUSE_IMAGE"],
            pause_image_archive=Path(values["PAUSE_IMAGE_ARCHIVE"]),
            busybox_image=values["BUSYBOX_IMAGE"],
            busybox_image_archive=Path(values["BUSYBOX_IMAGE_ARCHIVE"]),
        )
        absent = [
            str(p)
            for p in (
                runtime.kubelet,
                runtime.containerd_bin / "containerd",
                runtime.containerd_bin / "ctr",
                runtime.containerd_bin / "containerd-shim-runc-v2",
                runtime.runc,
                runtime.cni_bin_dir / "bridge",
                runtime.pause_image_archive,
                runtime.busybox_image_archive,
            )
            if not p.exists()
        ]
        if absent:
            raise NodeRuntimeNotFoundError(f"missing {', '.join(absent)}: {PROVISION_HINT}")
        return runtime


class KubeletNode(ProcessGroupOwner):
    """Start, probe and stop one kubelet node whose state lives in `work_dir`."""

    DEFAULT_NAME = "mockaccel-node"

    def __init__(
        self,
        plane: ControlPlane,
        runtime: NodeRuntime,
        work_dir: Path,
        *,
        name: str = DEFAULT_NAME,
        start_timeout: float = 120.0,
        cdi_spec_dir: Path | None = None,
        taints: Sequence[Mapping[str, str]] = (),
    ) -> None:
        self.plane = plane
        self.runtime = runtime
        self.name = name
        self.work_dir = work_dir.resolve()
        self.start_timeout = start_timeout
        self.taints = tuple(dict(t) for t in taints)
        self.log_dir = self.work_dir / "logs"
        self.host = NodeHost(self.work_dir, name)
        self.root_dir = self.host.kubelet_root_dir
        self.plugins_dir = self.root_dir / "plugins"
        self.plugins_registry_dir = self.root_dir / "plugins_registry"
        self.cdi_spec_dir = (cdi_spec_dir or self.work_dir / "cdi").resolve()
        self.pod_logs_dir = self.work_dir / "pod-logs"
        self.containerd_dir = self.work_dir / "containerd"
        self.containerd_socket = self.host.containerd_socket
        self.cni_conf_dir = self.host.cni_conflist.parent
        self.cgroup_root = self.host.cgroup_root
        self.node_ip = ""
        self.kubelet_port = 0
        self.bridge = ""
        self.pod_subnet = ""
        self.ready_seconds: float | None = None
        self._processes: list[ManagedProcess] = []

    @classmethod
    def from_settings(
        cls, settings: Settings, plane: ControlPlane, work_dir: Path, *, taints: Sequence[Mapping[str, str]] = ()
    ) -> KubeletNode:
        return cls(
            plane, NodeRuntime.from_settings(settings), work_dir, start_timeout=settings.start_timeout, taints=taints
        )

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start containerd and kubelet, wait for a Ready, untainted Node.

        On failure everything is stopped and cleaned up (logs are kept) and
        KubeletNodeStartError carries the last log lines of each component.
        """
        if self._processes:
            raise RuntimeError("kubelet node already started")
        started = time.monotonic()
        deadline = started + self.start_timeout
        try:
            self._start(deadline)
        except BaseException as exc:
            report = self._failure_report(exc)
            self.stop()
            if isinstance(exc, KubeletNodeStartError | TimeoutError | OSError | subprocess.CalledProcessError):
                raise KubeletNodeStartError(report) from exc
            raise
        self.ready_seconds = time.monotonic() - started

    def stop(self, grace: float = 10.0) -> None:
        """Stop kubelet, kill the pods, stop containerd, then undo every host change."""
        while self._processes:
            proc = self._processes.pop()
            if proc.name == "containerd":
                self.host.kill_pods()
            proc.stop(grace)
        self.host.clean_up()

    # -- start -----------------------------------------------------------------------

    def _start(self, deadline: float) -> None:
        self.host.clean_up()  # leftovers of a run that was killed with this work dir
        for d in (self.log_dir, self.plugins_dir, self.plugins_registry_dir, self.cdi_spec_dir, self.pod_logs_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.host.make_cgroup_root()
        self.bridge, self.pod_subnet = _pick_bridge_and_subnet(self.name)
        self.node_ip = _primary_ipv4()
        self._write_cni_config()
        containerd_config = self._write_containerd_config()
        self._spawn("containerd", [str(self.runtime.containerd_bin / "containerd"), "--config", str(containerd_config)])
        self._wait("containerd", deadline, lambda: self._ctr("version", check=False).returncode == 0)
        for archive in (self.runtime.pause_image_archive, self.runtime.busybox_image_archive):
            self.import_image(archive)
        # deploy/examples name the busybox image by a stable tag, whatever its version.
        self._ctr("images", "tag", "--force", self.runtime.busybox_image, EXAMPLES_BUSYBOX_IMAGE)

        (self.kubelet_port, healthz_port) = net.free_ports(2)
        cert = pki.issue_client(
            self.plane.ca_cert_pair, self.work_dir / "pki", "kubelet-client", f"system:node:{self.name}", "system:nodes"
        )
        kubeconfig = write_kubeconfig(
            self.work_dir / "kubelet.kubeconfig",
            server=self.plane.server,
            ca=self.plane.ca_cert,
            cert=cert.cert,
            key=cert.key,
            user=f"system:node:{self.name}",
        )
        config = self.work_dir / "kubelet-config.json"
        config.write_text(json.dumps(self._kubelet_config(healthz_port), indent=2) + "\n")
        self._spawn(
            "kubelet",
            [
                str(self.runtime.kubelet),
                f"--config={config}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.root_dir}",
                f"--cert-dir={self.root_dir / 'pki'}",
                f"--hostname-override={self.name}",
                f"--node-ip={self.node_ip}",
                "--v=2",
            ],
        )
        self._wait("kubelet /healthz", deadline, lambda: net.http_get(healthz_port, "/healthz", tls=False)[0] == 200)
        self._wait(f"Node {self.name} Ready", deadline, lambda: _is_ready(self._read_node()))
        # TaintNodesByCondition taints every new Node not-ready; the node-lifecycle
        # controller would lift it, but the test-bed runs without it (fake Nodes do not
        # heartbeat). The kubelet reported Ready: lift the taint as that controller would.
        self._wait(f"Node {self.name} untainted", deadline, self._lift_not_ready_taint)

    def _lift_not_ready_taint(self) -> bool:
        """True once the taint is gone; otherwise ask for its removal (again)."""
        if not any(t.get("key") == NOT_READY_TAINT for t in _taints(self._read_node())):
            return True
        self._kubectl("taint", "nodes", self.name, f"{NOT_READY_TAINT}:NoSchedule-", check=False)
        return False

    def _kubelet_config(self, healthz_port: int) -> dict[str, Any]:
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # KEP-5573: kubelet >= 1.35 refuses cgroup v1 unless told; these machines are v1 hybrid.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",  # no systemd; containerd reports cgroupfs too
            "cgroupRoot": self.cgroup_root,
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "address": self.node_ip,
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": net.LOOPBACK,
            "healthzPort": healthz_port,
            # kubelet refuses a loopback node IP ("nodeIP can't be loopback address": the
            # Node then has no addresses and `kubectl logs` fails), so it serves on the
            # machine's own address. Only clients with a certificate of this throwaway
            # cluster's CA get in (the API server has one); no anonymous access.
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(self.plane.ca_cert)},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "podLogsDir": str(self.pod_logs_dir),
            # No KUBE-FIREWALL/canary chains: they are host-wide and nothing here needs them.
            "makeIPTablesUtilChains": False,
            # A test machine's disk is small and shared: never evict or GC for space.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "serializeImagePulls": False,
            "registerNode": True,
            "registerWithTaints": list(self.taints),
            "nodeStatusUpdateFrequency": "2s",
            "syncFrequency": "5s",
            "resolvConf": "",
            "maxPods": 50,
        }

    def _write_containerd_config(self) -> Path:
        root = self.containerd_dir / "root"
        state = self.containerd_dir / "state"
        runtime = "plugins.'io.containerd.cri.v1.runtime'"
        images = "plugins.'io.containerd.cri.v1.images'"
        text = f"""\
# Written by mockaccel_testing.kubelet_node; every path is under the node's work dir.
version = 3  # the 2.x format the spec measured; containerd migrates it at start
root = {_toml(root)}
state = {_toml(state)}
imports = []  # not the host's /etc/containerd/conf.d

[plugins.'io.containerd.nri.v1.nri']
  disable = true  # its socket would be the host's /var/run/nri/nri.sock

[grpc]
  address = {_toml(self.containerd_socket)}

[ttrpc]
  address = {_toml(f"{self.containerd_socket}.ttrpc")}

[debug]
  level = "info"

[plugins.'io.containerd.internal.v1.opt']
  path = {_toml(root / "opt")}

[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[{runtime}]
  enable_cdi = true
  cdi_spec_dirs = [{_toml(self.cdi_spec_dir)}]
  # root lacks CAP_SYS_RESOURCE here: runc cannot set a negative oom_score_adj.
  restrict_oom_score_adj = true
  # Pod network namespaces under state, not the host's /var/run/netns.
  netns_mounts_under_state_dir = true

[{runtime}.containerd]
  default_runtime_name = "runc"

[{runtime}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
  runtime_path = {_toml(self.runtime.containerd_bin / "containerd-shim-runc-v2")}

[{runtime}.containerd.runtimes.runc.options]
  BinaryName = {_toml(self.runtime.runc)}
  Root = {_toml(state / "runc")}  # runc's state, not the host's /run/containerd/runc
  SystemdCgroup = false

[{runtime}.cni]
  bin_dirs = [{_toml(self.runtime.cni_bin_dir)}]
  conf_dir = {_toml(self.cni_conf_dir)}
  max_conf_num = 1

[{images}.pinned_images]
  sandbox = {_toml(self.runtime.pause_image)}
"""
        path = self.containerd_dir / "config.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def _write_cni_config(self) -> None:
        subnet = ipaddress.ip_network(self.pod_subnet)
        conflist = {
            "cniVersion": "1.0.0",
            "name": f"mockaccel-{self.name}",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": True,
                    "ipMasq": False,  # no iptables rules; pods need no egress
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": str(subnet), "gateway": str(next(subnet.hosts()))}]],
                        "dataDir": str(self.work_dir / "cni" / "ipam"),
                    },
                }
            ],
        }
        self.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        # Private conf dir; the name still sorts before podman's 87-podman-bridge.conflist.
        self.host.cni_conflist.write_text(json.dumps(conflist, indent=2) + "\n")

    # -- stop ------------------------------------------------------------------------

    def import_image(self, archive: Path) -> None:
        """Load an OCI archive into containerd's ``k8s.io`` namespace (pods never pull)."""
        self._ctr("images", "import", "--all-platforms", str(archive))

    # -- helpers ---------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> None:
        proc = ManagedProcess(name, argv, self.log_dir / f"{name}.log")
        self._processes.append(proc)
        proc.start()

    def _ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.runtime.containerd_bin / "ctr"), "--address", str(self.containerd_socket), "-n", "k8s.io", *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=300,  # importing a service image (~200 MB) on a busy machine
        )

    def _kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.plane.binaries.kubectl), f"--kubeconfig={self.plane.kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=30,
        )

    def _read_node(self) -> Mapping[str, Any]:
        status, body = self.plane.api_get(f"/api/v1/nodes/{self.name}")
        if status != 200:
            return {}
        node: Mapping[str, Any] = json.loads(body)
        return node

    def _wait(self, what: str, deadline: float, probe: Callable[[], bool]) -> None:
        """Poll `probe` until it holds; fail at once if a component has exited."""
        while True:
            for proc in self._processes:
                code = proc.exit_code()
                if code is not None:
                    raise KubeletNodeStartError(f"{proc.name} exited with code {code} while waiting for {what}")
            try:
                if probe():
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {self.start_timeout:.0f}s waiting for {what}")
            time.sleep(0.1)

    def _failure_report(self, exc: BaseException) -> str:
        detail = exc.stderr if isinstance(exc, subprocess.CalledProcessError) else ""
        parts = [f"kubelet node failed to start: {exc} {detail}".rstrip(), f"work dir (logs kept): {self.work_dir}"]
        for proc in self._processes:
            parts.append(f"--- last {LOG_TAIL_LINES} lines of {proc.log_path} ---\n{proc.tail(LOG_TAIL_LINES)}")
        return "\n".join(parts)

    def describe(self) -> dict[str, object]:
        """What the CLI records about a running node."""
        return {
            "name": self.name,
            "work_dir": str(self.work_dir),
            "containerd_socket": str(self.containerd_socket),
            "ctr": str(self.runtime.containerd_bin / "ctr"),
            "root_dir": str(self.root_dir),
            "plugins_dir": str(self.plugins_dir),
            "plugins_registry_dir": str(self.plugins_registry_dir),
            "cdi_spec_dir": str(self.cdi_spec_dir),
            "busybox_image": self.runtime.busybox_image,
            "pids": {p.name: p.pid for p in self._processes},
            "logs": {p.name: str(p.log_path) for p in self._processes},
        }


@dataclass(frozen=True)
class NodeHost:
    """The host-side traces of a node in `work_dir`, and how to remove them.

    Separate from KubeletNode so that `tools/cluster down` can clean up after a node
    whose owner was killed, knowing only its work dir and name.
    """

    work_dir: Path
    name: str

    @property
    def containerd_socket(self) -> Path:
        return self.work_dir / "containerd" / "containerd.sock"

    @property
    def cni_conflist(self) -> Path:
        return self.work_dir / "cni" / "net.d" / "10-mockaccel.conflist"

    @property
    def pod_logs_dir(self) -> Path:
        return self.work_dir / "pod-logs"

    @property
    def kubelet_root_dir(self) -> Path:
        """kubelet's --root-dir: short, because plugin sockets live under it.

        A DRA driver with per-pod sockets registers
        ``<root>/plugins_registry/<driver>-<podUID>-reg.sock`` (68 bytes for
        mock-accel.example.com) and sun_path holds 107: a root under a pytest temp
        dir or the cache is too long. Unique per work dir, like the cgroup root.
        """
        digest = hashlib.sha256(str(self.work_dir).encode()).hexdigest()[:8]
        return KUBELET_ROOT_BASE / digest

    @property
    def cgroup_root(self) -> str:
        """Unique per work dir, so two nodes of the same name (CLI and tests) never share one."""
        digest = hashlib.sha256(str(self.work_dir).encode()).hexdigest()[:8]
        return f"/mockaccel/{self.name}-{digest}"

    def clean_up(self) -> None:
        """Undo host changes; safe to call repeatedly and after a killed run."""
        self.kill_shims()
        self.kill_pods()
        _unmount_under(self.work_dir)
        _unmount_under(self.kubelet_root_dir)
        self.remove_cgroups()
        with contextlib.suppress(ValueError, KeyError, IndexError, OSError):
            bridge = json.loads(self.cni_conflist.read_text())["plugins"][0]["bridge"]
            subprocess.run(["ip", "link", "delete", bridge], capture_output=True, check=False)
        if CONTAINER_LOG_LINKS.is_dir():
            for link in CONTAINER_LOG_LINKS.iterdir():
                with contextlib.suppress(OSError):
                    if link.is_symlink() and os.readlink(link).startswith(f"{self.pod_logs_dir}/"):
                        link.unlink()

    def kill_shims(self) -> None:
        """containerd's shims leave its process group; find them by their -address."""
        address = str(self.containerd_socket).encode()
        for pid in _pids():
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and address in argv:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def cgroup_dirs(self) -> list[Path]:
        """Our cgroup root in every mounted hierarchy."""
        rel = self.cgroup_root.lstrip("/")
        return [h / rel for h in _cgroup_hierarchies()]

    def make_cgroup_root(self) -> None:
        for d in self.cgroup_dirs():
            d.mkdir(parents=True, exist_ok=True)
            if (d.parent / "cpuset.cpus").exists():
                # A new v1 cpuset is empty: copy cpus and mems down so tasks may join.
                for path in (d.parent, d):
                    for key in ("cpuset.cpus", "cpuset.mems"):
                        if not (path / key).read_text().strip():
                            (path / key).write_text((path.parent / key).read_text())

    def kill_pods(self) -> None:
        """SIGKILL every process in the node's cgroup tree (all pod containers)."""
        for d in self.cgroup_dirs():
            if not d.is_dir():
                continue
            for procs in d.rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    for line in procs.read_text().split():
                        with contextlib.suppress(ProcessLookupError, ValueError):
                            os.kill(int(line), signal.SIGKILL)

    def remove_cgroups(self) -> None:
        deadline = time.monotonic() + 10
        for d in self.cgroup_dirs():
            if not d.is_dir():
                continue
            dirs = sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
            for sub in [*dirs, d]:
                while True:
                    try:
                        sub.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:  # EBUSY while killed tasks exit
                        if time.monotonic() > deadline:
                            break
                        time.sleep(0.05)
            with contextlib.suppress(OSError):
                d.parent.rmdir()  # /mockaccel, when no other node uses it


def _is_ready(node: Mapping[str, Any]) -> bool:
    conditions = node.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _taints(node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    taints: list[Mapping[str, Any]] = node.get("spec", {}).get("taints") or []
    return taints


def _toml(value: object) -> str:
    """A TOML basic string (JSON string escaping is a subset of TOML's)."""
    return json.dumps(str(value))


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _cgroup_hierarchies() -> list[Path]:
    """Mount points of every cgroup (v1) and cgroup2 hierarchy under /sys/fs/cgroup."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype = right.split(" ", 1)[0]
        mount_point = Path(left.split(" ")[4])
        if fstype in ("cgroup", "cgroup2") and CGROUP_FS in (mount_point, *mount_point.parents):
            found.append(mount_point)
    return found


def _unmount_under(directory: Path) -> None:
    """Lazily unmount everything mounted at or below `directory`, deepest first."""
    prefix = f"{directory}/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split(" ")[4].replace("\\040", " ")
        if point.startswith(prefix) or point == str(directory):  # kubelet makes its root dir a mount
            points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _primary_ipv4() -> str:
    """The source address of the default route: an address kubelet accepts as node IP."""
    out = subprocess.run(["ip", "-4", "route", "get", "1.1.1.1"], capture_output=True, text=True, check=True).stdout
    words = out.split()
    if "src" not in words:
        raise KubeletNodeStartError(f"no IPv4 source address for the node IP in `ip route get`: {out!r}")
    return words[words.index("src") + 1]


def _pick_bridge_and_subnet(name: str) -> tuple[str, str]:
    """A bridge name (<= 15 chars) and a /24 in 10.244.0.0/16 no host route uses yet."""
    used = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    rng = random.Random(f"{name}-{os.getpid()}-{time.monotonic_ns()}")
    for _ in range(200):
        third = rng.randrange(0, 256)
        subnet = f"10.244.{third}.0/24"
        if f"10.244.{third}." not in used:
            return f"mockaccel{rng.randrange(16**6):06x}", subnet
    raise KubeletNodeStartError("no free /24 in 10.244.0.0/16 for the pod network")
