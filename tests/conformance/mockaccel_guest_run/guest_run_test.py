"""The conformance suite in the guest: the real driver, real NUMA, VFs created and removed at run time.

Builds mock-accel.ko against the guest kernel's headers, boots the emulated
node of the suite's topology (2 NUMA nodes x 2 PFs and a root-bus PF, one vfio-server each),
runs the same pytest files as the simulator run inside the guest (Debian's
python3 and pytest from the 9p root file system), then checks from the host:
the guest's report (no failure, no skip), the kernel log (no BUG/WARN/Oops),
and the devices' side through each vfio-server's control API.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

import mockaccel_common
import mockaccel_conformance
import mockaccel_node
from mockaccel_conformance.topology import conformance_node
from mockaccel_node.module import build_module
from mockaccel_node.node import KERNEL_PROBLEM, EmulatedNode
from mockaccel_node.settings import NodeSettings, Provisioned

GUEST_TIMEOUT_S = 1000.0
# Boot to every PF listed: about 20 s idle; measured > 120 s (guest time 14 s) at load 27 on 2 cores.
READY_TIMEOUT_S = 400.0
RUN_SCRIPT = """#!/bin/sh
# Runs in the node's initramfs; in-rootfs enters the Python root file system.
# A task stuck for 20 s in the kernel is reported on the console (and fails the run).
echo 20 >/proc/sys/kernel/hung_task_timeout_secs
# If the suite is still running after 6 minutes, dump blocked tasks to the kernel log.
(sleep ${MOCKACCEL_WATCHDOG_S:-360}; echo w >/proc/sysrq-trigger) &
in-rootfs MOCKACCEL_CONFORMANCE_TARGET=guest python3 -m pytest -p no:cacheprovider \\
	-o python_files='*_test.py' -v -rfEsxX --junitxml=/mnt/share/junit-guest.xml \\
	/mnt/share/src/mockaccel_conformance >/mnt/share/pytest.txt 2>&1
rc=$?
lsmod >/mnt/share/lsmod.txt
cat /proc/interrupts >/mnt/share/interrupts.txt
for d in /sys/bus/pci/devices/*; do echo "$d $(cat $d/vendor) irq=$(cat $d/irq)"; done >/mnt/share/pci-irqs.txt
exit $rc
"""


@pytest.fixture
def share() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="mockaccel-share-"))
    src = folder / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "BUILD")
    for package in (mockaccel_common, mockaccel_conformance, mockaccel_node):
        assert package.__file__ is not None
        shutil.copytree(Path(package.__file__).parent, src / package.__name__, ignore=ignore)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _junit_totals(report: Path) -> dict[str, int]:
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in ET.parse(report).getroot().iter("testsuite"):
        for key in totals:
            totals[key] += int(suite.get(key, 0))
    return totals


def record_property(name: str, value: object) -> None:
    """Timings go to the test's output (pants test --test-output=all); junit xunit2 has no properties."""
    print(f"TIMING {name}={value}", flush=True)


# The guest's own deadline (GUEST_TIMEOUT_S) ends a stuck run with its logs; pytest's default
# 300 s is too short for a TCG guest on a loaded 2-core machine (measured: 160 s idle, > 300 s loaded).
@pytest.mark.timeout(GUEST_TIMEOUT_S + 120)
def test_conformance_suite_in_the_guest(share: Path, tmp_path: Path) -> None:
    provisioned = Provisioned.from_env()
    started = time.monotonic()
    module = build_module(provisioned.kdir, tmp_path / "build")
    record_property("module_build_s", round(time.monotonic() - started, 1))
    run_script = tmp_path / "run.sh"
    run_script.write_text(RUN_SCRIPT)
    settings = NodeSettings(
        node=conformance_node(),
        run_dir=tmp_path / "node",
        module=module,
        provisioned=provisioned,
        share=share,
        run_script=run_script,
    )
    with EmulatedNode(settings) as node:
        ready_s = node.wait_ready(READY_TIMEOUT_S)
        record_property("boot_to_ready_s", round(ready_s, 1))
        status = node.wait_exit(GUEST_TIMEOUT_S)
        record_property("guest_run_s", round(time.monotonic() - node.started, 1))
        states = {pf.name: node.control(pf.name, {"op": "state"}) for pf in node.plan.pfs}
        problems = node.kernel_problems()
        exit_codes = node.server_exit_codes()
        log_tail = node.tail(node.text())
        assert node.bridge is not None
        bridged = node.bridge.handled

    output = (share / "pytest.txt").read_text() if (share / "pytest.txt").exists() else "(no pytest output)"
    assert status == 0, f"guest suite failed ({status}):\n{output[-6000:]}\n--- serial log ---\n{log_tail}"
    totals = _junit_totals(share / "junit-guest.xml")
    record_property("guest_tests", totals["tests"])
    assert totals["failures"] == totals["errors"] == 0, output[-6000:]
    assert totals["skipped"] == 0, f"kernel-only checks must all run in the guest:\n{output[-3000:]}"
    assert totals["tests"] >= 60, totals

    dmesg = (share / "dmesg.txt").read_text()
    problems += [line for line in dmesg.splitlines() if KERNEL_PROBLEM.search(line)]
    assert not problems, "kernel log shows problems:\n" + "\n".join(problems[:40])
    assert "mock_accel" in (share / "lsmod.txt").read_text(), "the module is loaded again after the stress run"

    # The devices' side: every server survived the run and saw the guest's writes and the bridge's requests.
    assert exit_codes == [None] * len(settings.node.pfs), exit_codes
    for name, reply in states.items():
        assert reply["ok"], reply
        state = reply["state"]
        assert state["guest_writes"] > 0, (name, state)
        assert state["clients_served"] >= 1, (name, state)
    assert bridged > 0, "the suite reached the vfio-servers through the bridge"
    # boot_to_ready_s is recorded above, not asserted: a goal is checked by a benchmark
    # that prints numbers, never by a timed test on a shared 2-core machine.
