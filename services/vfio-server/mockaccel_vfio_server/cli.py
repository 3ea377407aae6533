"""``mockaccel device …``: a command line over a vfio-server's control API (docs/abi.md §7).

    mockaccel device --control-socket S read 0x2c [--width 4]
    mockaccel device --control-socket S write 0x2c 1
    mockaccel device --control-socket S vfs
    mockaccel device --control-socket S health pf|VF healthy|unhealthy
    mockaccel device --control-socket S fault fail_reads|fail_writes on|off
    mockaccel device --control-socket S fault slow MS|off
    mockaccel device --control-socket S state

Prints the server's JSON reply; exits 0 when it says ``ok``, 1 when the
device refused, 2 for a usage error. A blocking client on purpose: one
request, one reply, no event loop needed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mockaccel_vfio_server.adapters.control_client import ControlClient


def _number(text: str) -> int:
    return int(text, 0)


def _function(text: str) -> str | int:
    return "pf" if text == "pf" else int(text, 10)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mockaccel", description="mock-accel tools")
    groups = parser.add_subparsers(dest="group", required=True)
    device = groups.add_parser("device", help="talk to a vfio-server's control API")
    device.add_argument("--control-socket", type=Path, required=True, help="the server's --control-socket")
    ops = device.add_subparsers(dest="op", required=True)
    read = ops.add_parser("read", help="read a BAR0 register as the guest would")
    read.add_argument("offset", type=_number)
    read.add_argument("--width", type=int, default=4, choices=(1, 2, 4, 8))
    write = ops.add_parser("write", help="write a BAR0 register (4 bytes) as the guest would")
    write.add_argument("offset", type=_number)
    write.add_argument("value", type=_number)
    ops.add_parser("vfs", help="list the VFs")
    health = ops.add_parser("health", help="mark the PF or a VF healthy or unhealthy")
    health.add_argument("function", type=_function, help="pf or a VF index")
    health.add_argument("health", choices=("healthy", "unhealthy"))
    fault = ops.add_parser("fault", help="inject or clear a fault on guest accesses")
    fault.add_argument("kind", choices=("fail_reads", "fail_writes", "slow"))
    fault.add_argument("setting", help="on|off, or for slow: milliseconds|off")
    ops.add_parser("state", help="dump registers and server state")
    return parser


def _request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    if args.op == "read":
        return "read", {"offset": args.offset, "width": args.width}
    if args.op == "write":
        return "write", {"offset": args.offset, "value": args.value}
    if args.op == "health":
        return "health", {"function": args.function, "healthy": args.health == "healthy"}
    if args.op == "fault":
        if args.setting in ("on", "off"):
            return "fault", {"kind": args.kind, "enabled": args.setting == "on"}
        return "fault", {"kind": args.kind, "enabled": True, "delay_ms": int(args.setting, 10)}
    return args.op, {}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        op, fields = _request(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        with ControlClient(args.control_socket) as client:
            reply = client.request(op, **fields)
    except OSError as exc:
        print(f"mockaccel: cannot reach {args.control_socket}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(reply, indent=2 if op in ("state", "vfs") else None))
    return 0 if reply.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
