"""The kernel-log check: the debug kernel's checkers' reports fail a run, ordinary lines do not."""

from __future__ import annotations

from pathlib import Path

import pytest

from mockaccel_common.simulator.topology import loads_topology
from mockaccel_node.node import KERNEL_PROBLEM, hung_report
from mockaccel_node.plan import plan_node, server_args

TOPOLOGY = """
[[node]]
name = "n"

[[node.pf]]
numa_node = -1

[[node.pf]]
numa_node = 1
"""


@pytest.mark.parametrize(
    "line",
    [
        "[   12.3] BUG: KASAN: use-after-free in mock_accel_remove+0x1c/0x90 [mock_accel]",
        "[   12.3] WARNING: possible circular locking dependency detected",
        "[   12.3] INFO: trying to register non-static key.",
        "[   12.3] BUG: sleeping function called from invalid context at kernel/locking/mutex.c:580",
        "[   12.3] ODEBUG: free active (active state 0) object type: timer_list hint: 0x0",
        "[   12.3] BUG kmalloc-64 (Tainted: G           O      ): Poison overwritten",
        "[   12.3] BUG kmalloc-128 (Not tainted): Redzone overwritten",
        "[   12.3] INFO: task rmmod:123 blocked for more than 20 seconds.",
        "[   12.3] Kernel panic - not syncing: Fatal exception",
    ],
    ids=["kasan", "lockdep", "lockdep-key", "atomic-sleep", "debugobjects", "slub", "slub-untainted", "hung", "panic"],
)
def test_checker_reports_are_problems(line: str) -> None:
    assert KERNEL_PROBLEM.search(line)


@pytest.mark.parametrize(
    "line",
    [
        "[    0.5] kasan: KernelAddressSanitizer initialized",
        "[    0.9] Lock dependency validator: Copyright (c) 2006 Red Hat, Inc., Ingo Molnar",
        "[   24.3] mock_accel: loading out-of-tree module taints kernel.",
        "MOCKACCEL_DEVICES_READY uptime=5.2",
    ],
    ids=["kasan-banner", "lockdep-banner", "taint", "ready"],
)
def test_ordinary_lines_are_not(line: str) -> None:
    assert not KERNEL_PROBLEM.search(line)


def test_hung_report_starts_at_the_first_hung_task() -> None:
    log = "\n".join(
        [
            "[    5.0] mock-accel 0000:01:00.0: mock0: uuid ...",
            "[   40.1] INFO: task insmod:99 blocked for more than 20 seconds.",
            "[   40.1] Call Trace:",
            "[   45.0] sysrq: Show Blocked State",
            *(f"[   45.{i}] frame {i}" for i in range(300)),
        ]
    )
    report = hung_report(log, lines=50).splitlines()
    assert report[0] == "[   40.1] INFO: task insmod:99 blocked for more than 20 seconds."
    assert report[2] == "[   45.0] sysrq: Show Blocked State"
    assert len(report) == 50


def test_only_pfs_behind_an_expander_are_served_without_intx(tmp_path: Path) -> None:
    """QEMU routes no INTx from behind pxb-pcie: those servers offer MSI only (--intx false)."""
    node = loads_topology(TOPOLOGY).node("n")
    plan = plan_node(node, tmp_path)
    without = {pf.name for pf in plan.pfs if "--intx" in server_args(pf, None)}
    behind = {pf.name for pf in plan.pfs if pf.placement.expander_bus}
    assert behind, "the topology places a PF on a NUMA node (behind an expander)"
    assert without == behind
    assert len(plan.pfs) > len(behind), "and one on the root bus"
    for pf in plan.pfs:
        args = server_args(pf, None)
        if pf.name in without:
            assert args[args.index("--intx") + 1] == "false"
