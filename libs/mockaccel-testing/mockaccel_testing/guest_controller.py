"""The controller inside the emulated node: real driver, real sysfs, real uevents, a real API server.

The emulated node (mockaccel_node) boots with a virtio NIC on QEMU user
networking, so the guest reaches the host's loopback API server at 10.0.2.2
(the test-bed's serving certificate names that address). The controller is
the pex the image ships, unpacked on the host into the share with its
modules compiled (running the pex itself in the guest means unpacking 67 MB
and compiling under TCG: more than five minutes before the first line), and
runs in the guest's Python root file system (the same Python 3.11) with
``--sysfs-root /sys``: what it discovers is what the kernel module created.
The host drives changes through the share: it writes
``cmd/<n>.sh`` (atomically), the guest runs it and writes ``cmd/<n>.rc`` and
``cmd/<n>.out``. The guest's shell polls for the next command every 20 ms.

Used by the e2e test (tests/e2e/controller_guest_test.py, asserts behaviour)
and the benchmark (tools/bench/controller_guest_bench.py, prints timings).
"""

from __future__ import annotations

import compileall
import json
import os
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mockaccel_common.simulator.topology import NodeSpec, loads_topology
from mockaccel_node.module import build_module
from mockaccel_node.node import EmulatedNode
from mockaccel_node.settings import NodeSettings, Provisioned
from mockaccel_testing.control_plane import ControlPlane
from mockaccel_testing.pki import QEMU_USER_NET_HOST

GUEST_SHARE = "/mnt/share"  # where /init mounts the share inside the root file system
# The guest's side. Runs in the initramfs after "devices ready"; in-rootfs enters the Python root.
RUN_SCRIPT = r"""#!/bin/sh
S=/mnt/share
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
mkdir -p $S/cmd
# The controller: the unpacked pex, the real sysfs, the API server on the host.
in-rootfs /usr/bin/env PYTHONUNBUFFERED=1 PYTHONPATH="$(cat $S/controller.path)" python3 -m mockaccel_controller \
	--node-name "$(cat $S/node-name)" --sysfs-root /sys \
	--kubeconfig $S/kubeconfig --require-agent false --resync-interval 3600 \
	>$S/controller.log 2>&1 &
controller=$!
echo "mockaccel-guest: controller started"
n=0
while [ ! -e $S/cmd/stop ]; do
	if [ -e $S/cmd/$n.sh ]; then
		sh $S/cmd/$n.sh >$S/cmd/$n.out 2>&1
		echo $? >$S/cmd/.$n.rc
		mv $S/cmd/.$n.rc $S/cmd/$n.rc
		n=$((n + 1))
	else
		sleep 0.02
	fi
done
kill $controller 2>/dev/null
wait
exit 0
"""


class GuestCommands:
    """Run shell commands in the guest through the share, one at a time, in order."""

    def __init__(self, share: Path, node: EmulatedNode) -> None:
        self.dir = share / "cmd"
        self.node = node
        self._next = 0

    def submit(self, script: str) -> int:
        """Hand ``script`` to the guest; returns its number (for ``wait``)."""
        self.dir.mkdir(exist_ok=True)
        n = self._next
        self._next += 1
        tmp = self.dir / f".{n}.sh"
        tmp.write_text(script + "\n")
        os.replace(tmp, self.dir / f"{n}.sh")
        return n

    def wait(self, n: int, timeout: float = 120.0) -> str:
        """The output of command ``n``; raises if it failed, the guest died or the deadline passed."""
        rc_file = self.dir / f"{n}.rc"
        deadline = time.monotonic() + timeout
        while not rc_file.exists():
            if time.monotonic() > deadline:
                tail = self.node.tail(self.node.text())
                raise TimeoutError(f"guest command {n} did not finish in {timeout} s\n{tail}")
            time.sleep(0.02)
        output = (self.dir / f"{n}.out").read_text(errors="replace")
        rc = int(rc_file.read_text())
        if rc != 0:
            raise RuntimeError(f"guest command {n} exited {rc}: {output}")
        return output

    def run(self, script: str, timeout: float = 120.0) -> str:
        return self.wait(self.submit(script), timeout)

    def stop(self) -> None:
        (self.dir / "stop").touch()


def guest_node_topology(node: str) -> NodeSpec:
    """The emulated node's devices for a controller in the guest: two PFs on NUMA node 0 with
    two VFs each (few, so the guest under TCG probes them quickly)."""
    text = f"""
[[node]]
name = "{node}"

[[node.pf]]
numa_node = 0
count = 2
memory = "16Gi"
total_vfs = 2
vf_memory = "2Gi"
"""
    return loads_topology(text).node(node)


def unpack_pex(pex: Path, share: Path) -> str:
    """Unpack ``pex`` into ``share/controller`` and compile it; the guest's PYTHONPATH for it."""
    target = share / "controller"
    with zipfile.ZipFile(pex) as archive:
        archive.extractall(target)
    compileall.compile_dir(target, quiet=2, workers=1)  # the same .pyc format as the guest's 3.11
    guest = Path(GUEST_SHARE) / "controller"
    deps = sorted(p.name for p in (target / ".deps").iterdir() if p.is_dir())
    return ":".join([*(str(guest / ".deps" / d) for d in deps), str(guest)])


def guest_kubeconfig(plane: ControlPlane, path: Path) -> Path:
    """The admin kubeconfig, pointing at the API server as the guest reaches it."""
    config = json.loads(plane.kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://{QEMU_USER_NET_HOST}:{plane.apiserver_port}"
    path.write_text(json.dumps(config))
    return path


@contextmanager
def controller_in_guest(
    plane: ControlPlane, node: NodeSpec, controller_pex: Path, work: Path
) -> Iterator[tuple[EmulatedNode, GuestCommands, Path]]:
    """Boot ``node`` with the real module and the controller running in it; yields (node, commands, share)."""
    provisioned = Provisioned.from_env()
    module = build_module(provisioned.kdir, work / "build")
    share = work / "share"
    share.mkdir(parents=True)
    (share / "controller.path").write_text(unpack_pex(controller_pex, share) + "\n")
    guest_kubeconfig(plane, share / "kubeconfig")
    (share / "node-name").write_text(node.name + "\n")
    run_script = work / "run.sh"
    run_script.write_text(RUN_SCRIPT)
    settings = NodeSettings(
        node=node,
        run_dir=work / "node",
        module=module,
        provisioned=provisioned,
        share=share,
        run_script=run_script,
        network=True,
    )
    with EmulatedNode(settings) as emulated:
        emulated.wait_ready()
        commands = GuestCommands(share, emulated)
        try:
            yield emulated, commands, share
        finally:
            commands.stop()


def controller_log(share: Path) -> list[dict[str, object]]:
    """The guest controller's JSON log lines so far."""
    path = share / "controller.log"
    if not path.exists():
        return []
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            lines.append({"event": "unparsed", "line": line})
    return lines
