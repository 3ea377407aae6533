"""A Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler.

Why no kubelet: DRA scheduling needs only the API, the resourceclaim controller and the
scheduler. Nodes are API objects a test creates (see `nodes.create_node`); pods get bound
to them and stay there, which is exactly what a scheduling test asserts.

Everything is synchronous (subprocess + blocking HTTP probes) so a session-scoped pytest
fixture can own it without an event loop.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from mockaccel_testing import net, pki
from mockaccel_testing.binaries import KubeBinaries
from mockaccel_testing.kubeconfig import write_kubeconfig
from mockaccel_testing.processes import ManagedProcess, ProcessGroupOwner
from mockaccel_testing.settings import Settings

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
LOG_TAIL_LINES = 40
# Nodes are fake (no kubelet heartbeats), so the node-lifecycle controller would taint
# them unreachable after the grace period and the scheduler would stop using them.
DEFAULT_DISABLED_CONTROLLERS = ("node-lifecycle-controller",)


class ControlPlaneStartError(RuntimeError):
    """The control plane did not come up; the message carries the component log tails."""


class ControlPlane(ProcessGroupOwner):
    """Start, probe and stop one control plane whose state lives in `work_dir`."""

    def __init__(
        self,
        binaries: KubeBinaries,
        work_dir: Path,
        *,
        start_timeout: float = 180.0,
        apiserver_extra_args: Sequence[str] = (),
        feature_gates: Mapping[str, bool] | None = None,
        disabled_controllers: Sequence[str] = DEFAULT_DISABLED_CONTROLLERS,
    ) -> None:
        self.binaries = binaries
        self.work_dir = work_dir.resolve()
        self.start_timeout = start_timeout
        self.apiserver_extra_args = tuple(apiserver_extra_args)
        self.feature_gates = dict(feature_gates or {})
        self.disabled_controllers = tuple(disabled_controllers)
        self.kubeconfig = self.work_dir / "admin.kubeconfig"
        self.log_dir = self.work_dir / "logs"
        self.apiserver_port = 0
        self._processes: list[ManagedProcess] = []
        self._pki: pki.ControlPlanePki | None = None

    @classmethod
    def from_settings(cls, settings: Settings, work_dir: Path) -> ControlPlane:
        return cls(
            KubeBinaries.locate(settings.kube_bin),
            work_dir,
            start_timeout=settings.start_timeout,
            apiserver_extra_args=settings.apiserver_extra_args,
        )

    @property
    def server(self) -> str:
        return f"https://{net.LOOPBACK}:{self.apiserver_port}"

    @property
    def admin_cert(self) -> pki.CertPair:
        return self._require_pki().admin

    @property
    def ca_cert(self) -> Path:
        return self._require_pki().ca.cert

    @property
    def ca_cert_pair(self) -> pki.CertPair:
        """The cluster CA with its key, to issue client identities (e.g. a kubelet's)."""
        return self._require_pki().ca

    def api_get(self, path: str) -> tuple[int, str]:
        """GET `path` from the API server as the admin; raises OSError when it is down."""
        admin = self.admin_cert
        return net.http_get(self.apiserver_port, path, tls=True, ca=self.ca_cert, cert=admin.cert, key=admin.key)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start every component and wait until the cluster accepts work.

        On failure every started process is stopped (logs are kept) and
        ControlPlaneStartError carries the last log lines of each component.
        """
        if self._processes:
            raise RuntimeError("control plane already started")
        deadline = time.monotonic() + self.start_timeout
        try:
            self._start(deadline)
        except BaseException as exc:
            report = self._failure_report(exc)
            self.stop()
            if isinstance(exc, ControlPlaneStartError | TimeoutError | OSError):
                raise ControlPlaneStartError(report) from exc
            raise

    def stop(self, grace: float = 10.0) -> None:
        """Stop in reverse start order: SIGTERM, then SIGKILL after `grace` seconds."""
        while self._processes:
            self._processes.pop().stop(grace)

    # -- internals -------------------------------------------------------------------

    def _start(self, deadline: float) -> None:
        etcd_client, etcd_peer, api, cm, sched = net.free_ports(5)
        self.apiserver_port = api
        self.work_dir.mkdir(parents=True, exist_ok=True)
        etcd_dir = self.work_dir / "etcd"
        shutil.rmtree(etcd_dir, ignore_errors=True)  # a start is always a fresh cluster
        certs = self._pki = pki.generate(self.work_dir / "pki", SERVICE_IP)
        write_kubeconfig(
            self.kubeconfig,
            server=self.server,
            ca=certs.ca.cert,
            cert=certs.admin.cert,
            key=certs.admin.key,
            user="mockaccel-admin",
        )
        cm_kubeconfig = write_kubeconfig(
            self.work_dir / "controller-manager.kubeconfig",
            server=self.server,
            ca=certs.ca.cert,
            cert=certs.controller_manager.cert,
            key=certs.controller_manager.key,
            user="system:kube-controller-manager",
        )
        sched_kubeconfig = write_kubeconfig(
            self.work_dir / "scheduler.kubeconfig",
            server=self.server,
            ca=certs.ca.cert,
            cert=certs.scheduler.cert,
            key=certs.scheduler.key,
            user="system:kube-scheduler",
        )
        gates = ",".join(f"{k}={str(v).lower()}" for k, v in sorted(self.feature_gates.items()))
        gate_args = [f"--feature-gates={gates}"] if gates else []

        etcd_url = f"http://{net.LOOPBACK}:{etcd_client}"
        peer_url = f"http://{net.LOOPBACK}:{etcd_peer}"
        self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=mockaccel",
                f"--data-dir={etcd_dir}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=mockaccel={peer_url}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync=true",  # test data: durability is not wanted, speed is
                "--log-level=warn",
            ],
        )
        self._wait("etcd /health", deadline, lambda: _ok(net.http_get(etcd_client, "/health", tls=False)))

        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={net.LOOPBACK}",
                f"--advertise-address={net.LOOPBACK}",
                f"--secure-port={api}",
                f"--tls-cert-file={certs.apiserver.cert}",
                f"--tls-private-key-file={certs.apiserver.key}",
                f"--client-ca-file={certs.ca.cert}",
                f"--service-account-key-file={certs.service_account_pub}",
                f"--service-account-signing-key-file={certs.service_account_key}",
                f"--service-account-issuer={SA_ISSUER}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--runtime-config=resource.k8s.io/v1beta1=true,resource.k8s.io/v1beta2=true",
                # A loopback advertise address is not a valid endpoint of the
                # "kubernetes" Service; nothing here needs that endpoint.
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                # `kubectl logs/exec` reach a real kubelet (kubelet_node.py) by its
                # node IP, as a client of the cluster CA; its hostname need not resolve.
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                f"--kubelet-client-certificate={certs.apiserver_kubelet_client.cert}",
                f"--kubelet-client-key={certs.apiserver_kubelet_client.key}",
                "--profiling=false",
                *gate_args,
                *self.apiserver_extra_args,
            ],
        )
        admin = certs.admin
        self._wait(
            "kube-apiserver /readyz",
            deadline,
            lambda: _ok(net.http_get(api, "/readyz", tls=True, ca=certs.ca.cert, cert=admin.cert, key=admin.key)),
        )

        controllers = ",".join(["*", *(f"-{c}" for c in self.disabled_controllers)])
        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={cm_kubeconfig}",
                f"--authentication-kubeconfig={cm_kubeconfig}",
                f"--authorization-kubeconfig={cm_kubeconfig}",
                f"--bind-address={net.LOOPBACK}",
                f"--secure-port={cm}",
                f"--cert-dir={self.work_dir / 'controller-manager'}",
                f"--controllers={controllers}",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={certs.service_account_key}",
                f"--root-ca-file={certs.ca.cert}",
                f"--cluster-signing-cert-file={certs.ca.cert}",
                f"--cluster-signing-key-file={certs.ca.key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--leader-elect=false",
                "--profiling=false",
                *gate_args,
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(self.binaries.kube_scheduler),
                f"--kubeconfig={sched_kubeconfig}",
                f"--authentication-kubeconfig={sched_kubeconfig}",
                f"--authorization-kubeconfig={sched_kubeconfig}",
                f"--bind-address={net.LOOPBACK}",
                f"--secure-port={sched}",
                f"--cert-dir={self.work_dir / 'scheduler'}",
                "--leader-elect=false",
                "--profiling=false",
                *gate_args,
            ],
        )
        self._wait("kube-controller-manager /healthz", deadline, lambda: _ok(net.http_get(cm, "/healthz", tls=True)))
        self._wait("kube-scheduler /healthz", deadline, lambda: _ok(net.http_get(sched, "/healthz", tls=True)))
        # Pods are rejected by ServiceAccount admission until the namespace's "default"
        # ServiceAccount exists; its appearance also shows the controllers do their work.
        self._wait(
            "ServiceAccount default/default",
            deadline,
            lambda: _ok(
                net.http_get(
                    api,
                    "/api/v1/namespaces/default/serviceaccounts/default",
                    tls=True,
                    ca=certs.ca.cert,
                    cert=admin.cert,
                    key=admin.key,
                )
            ),
        )

    def _spawn(self, name: str, argv: list[str]) -> None:
        proc = ManagedProcess(name, argv, self.log_dir / f"{name}.log")
        self._processes.append(proc)
        proc.start()

    def _wait(self, what: str, deadline: float, probe: Callable[[], bool]) -> None:
        """Poll `probe` until it holds; fail at once if any component has exited."""
        while True:
            for proc in self._processes:
                code = proc.exit_code()
                if code is not None:
                    raise ControlPlaneStartError(f"{proc.name} exited with code {code} while waiting for {what}")
            try:
                if probe():
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {self.start_timeout:.0f}s waiting for {what}")
            time.sleep(0.2)

    def _failure_report(self, exc: BaseException) -> str:
        parts = [f"control plane failed to start: {exc}", f"work dir (logs kept): {self.work_dir}"]
        for proc in self._processes:
            parts.append(f"--- last {LOG_TAIL_LINES} lines of {proc.log_path} ---\n{proc.tail(LOG_TAIL_LINES)}")
        return "\n".join(parts)

    def _require_pki(self) -> pki.ControlPlanePki:
        if self._pki is None:
            raise RuntimeError("control plane not started")
        return self._pki

    def describe(self) -> dict[str, object]:
        """What the CLI records about a running control plane."""
        return {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "work_dir": str(self.work_dir),
            "pids": {p.name: p.pid for p in self._processes},
            "logs": {p.name: str(p.log_path) for p in self._processes},
        }

    def describe_json(self) -> str:
        return json.dumps(self.describe(), indent=2)


def _ok(response: tuple[int, str]) -> bool:
    return response[0] == 200
