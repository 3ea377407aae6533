"""``mockaccel-node up``: boot one node of a topology file as a QEMU guest with the real driver.

    tools/node up --topology deploy/examples/topology-two-numa.toml --node node-a
    tools/node up ... --run guest-script.sh --share DIR     # run a script, then power off
    tools/node up ... --kernel debug     # the KASAN/lockdep kernel (guest-debug-kernel.sh)

Prints ``devices ready after N.N s`` once /sys/class/mock-accel lists every PF,
then waits for the guest (Ctrl-C stops it). Exit status: the guest's, 1 for
a node that failed to come up, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mockaccel_common.errors import MockaccelError
from mockaccel_common.provisioned import PrerequisiteMissingError
from mockaccel_common.simulator.topology import load_topology
from mockaccel_node.module import MODULE_SOURCES, build_module
from mockaccel_node.node import EmulatedNode, NodeError
from mockaccel_node.settings import KernelFlavor, NodeSettings, Provisioned


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mockaccel-node", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="boot the node and wait")
    up.add_argument("--topology", type=Path, required=True)
    up.add_argument("--node", required=True)
    up.add_argument("--run-dir", type=Path, help="logs and initramfs (default: a new temp folder)")
    up.add_argument("--module", type=Path, help="a built mock-accel.ko (default: build it)")
    up.add_argument(
        "--module-source",
        type=Path,
        default=MODULE_SOURCES,
        help="kernel-module/ of a checkout, to build from (tools/node passes it; a pex has no sources)",
    )
    up.add_argument("--run", type=Path, help="shell script the guest runs after devices are ready")
    up.add_argument("--share", type=Path, help="host folder mounted at /mnt/share in the guest")
    up.add_argument(
        "--kernel",
        choices=[f.value for f in KernelFlavor],
        default=KernelFlavor.STOCK.value,
        help="guest kernel: Debian's (stock) or the one built with KASAN and lockdep (debug)",
    )
    up.add_argument("--timeout", type=float, default=0, help="stop the guest after this many seconds (0: never)")
    return parser


def _stop(signum: int, frame: object) -> None:
    """SIGTERM ends the node like Ctrl-C: the guest and every vfio-server are stopped."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    try:
        provisioned = Provisioned.from_env(flavor=KernelFlavor(args.kernel))
        node = load_topology(args.topology).node(args.node)
        run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix=f"mockaccel-node-{args.node}-"))
        module = args.module or build_module(provisioned.kdir, run_dir / "build", args.module_source)
        settings = NodeSettings(
            node=node, run_dir=run_dir, module=module, provisioned=provisioned, share=args.share, run_script=args.run
        )
        with EmulatedNode(settings) as emulated:
            print(f"node {node.name}: {len(node.pfs)} PFs, serial log {emulated.serial_log}", flush=True)
            print(f"devices ready after {emulated.wait_ready():.1f} s", flush=True)
            status = emulated.wait_exit(timeout=args.timeout or float("inf"))
            problems = emulated.kernel_problems()
            for line in problems:
                print(f"kernel problem: {line}", file=sys.stderr)
            return status or (1 if problems else 0)
    except (MockaccelError, PrerequisiteMissingError, NodeError, RuntimeError) as exc:
        print(f"mockaccel-node: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mockaccel-node: stopped", file=sys.stderr)
        return 130
