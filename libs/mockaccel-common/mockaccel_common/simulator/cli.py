"""``mockaccel-sim``: create a simulated node and act on it from a shell.

    mockaccel-sim create --topology topo.toml --node node-a --root /tmp/sys
    mockaccel-sim write --root /tmp/sys mock0 sriov_numvfs 2
    mockaccel-sim health --root /tmp/sys mock0v1 unhealthy
    mockaccel-sim remove --root /tmp/sys mock1
    mockaccel-sim show --root /tmp/sys

Errors print one line and exit 1 (2 for usage), leaving the tree unchanged.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from mockaccel_common.errors import MockaccelError
from mockaccel_common.simulator.engine import SimulatedNode
from mockaccel_common.simulator.topology import load_topology
from mockaccel_common.sysfs.reader import scan_devices_sync


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mockaccel-sim", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="materialise a node of a topology file")
    create.add_argument("--topology", type=Path, required=True)
    create.add_argument("--node", required=True)
    create.add_argument("--wordlist", type=Path, help="firmware wordlist for the passphrase engine")
    write = sub.add_parser("write", help="write an attribute as user space would")
    write.add_argument("device")
    write.add_argument("attribute")
    write.add_argument("value")
    health = sub.add_parser("health", help="make a device report a fault or recover")
    health.add_argument("device")
    health.add_argument("state", choices=("healthy", "unhealthy"))
    remove = sub.add_parser("remove", help="hot-unplug a PF and its VFs")
    remove.add_argument("device")
    sub.add_parser("show", help="print the devices as JSON")
    for command in sub.choices.values():
        command.add_argument("--root", type=Path, required=True, help="the simulated /sys")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "create":
            node = load_topology(args.topology).node(args.node)
            SimulatedNode.create(args.root, node, args.wordlist)
        elif args.command == "write":
            SimulatedNode.open(args.root).write(args.device, args.attribute, args.value + "\n")
        elif args.command == "health":
            SimulatedNode.open(args.root).set_health(args.device, args.state == "healthy")
        elif args.command == "remove":
            SimulatedNode.open(args.root).remove_pf(args.device)
        elif args.command == "show":
            result = scan_devices_sync(args.root)
            json.dump(
                {
                    "devices": [
                        {
                            "name": d.name,
                            "kind": d.kind.value,
                            "uuid": str(d.uuid),
                            "memory_size": d.memory_size,
                            "status": f"0x{int(d.status):08x}",
                            "numa_node": d.numa_node,
                            "pci_address": str(d.pci_address),
                            "physfn": d.physfn,
                        }
                        for d in result.devices
                    ],
                    "skipped": [{"name": s.name, "reason": s.reason} for s in result.skipped],
                },
                sys.stdout,
                indent=2,
            )
            sys.stdout.write("\n")
    except MockaccelError as exc:
        print(f"mockaccel-sim: {exc}", file=sys.stderr)
        return 1
    return 0
