"""What every guest run of the conformance suite shares: the 9p share, the guest's script, its report.

The stock-kernel run (guest_run_test.py) and the debug-kernel run
(debug_kernel_test.py) differ only in the kernel they boot and the test files
they select; both use these pieces.
"""

from __future__ import annotations

import shutil
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import mockaccel_common
import mockaccel_conformance
import mockaccel_node
from mockaccel_conformance.topology import conformance_node
from mockaccel_node.module import build_module
from mockaccel_node.settings import NodeSettings, Provisioned

GUEST_TIMEOUT_S = 1000.0
# Boot to every PF listed: about 20 s idle; measured > 120 s (guest time 14 s) at load 27 on 2 cores.
READY_TIMEOUT_S = 400.0

# @TARGETS@ are the pytest paths inside the guest; @AFTER@ runs after the suite.
RUN_SCRIPT = """#!/bin/sh
# Runs in the node's initramfs; in-rootfs enters the Python root file system.
# A task stuck for 20 s in the kernel is reported on the console (and fails the run).
echo 20 >/proc/sys/kernel/hung_task_timeout_secs
# If the suite is still running after the watchdog's time, dump blocked tasks to the kernel log.
(sleep ${MOCKACCEL_WATCHDOG_S:-@WATCHDOG_S@}; echo w >/proc/sysrq-trigger) &
in-rootfs MOCKACCEL_CONFORMANCE_TARGET=guest python3 -m pytest -p no:cacheprovider \\
	-o python_files='*_test.py' -v -rfEsxX --junitxml=/mnt/share/junit-guest.xml \\
	@TARGETS@ >/mnt/share/pytest.txt 2>&1
rc=$?
lsmod >/mnt/share/lsmod.txt
cat /proc/interrupts >/mnt/share/interrupts.txt
for d in /sys/bus/pci/devices/*; do echo "$d $(cat $d/vendor) irq=$(cat $d/irq)"; done >/mnt/share/pci-irqs.txt
@AFTER@
exit $rc
"""
SUITE = "/mnt/share/src/mockaccel_conformance"


def run_script(targets: str = SUITE, after: str = "", watchdog_s: int = 360) -> str:
    return RUN_SCRIPT.replace("@TARGETS@", targets).replace("@AFTER@", after).replace("@WATCHDOG_S@", str(watchdog_s))


def fill_share(folder: Path) -> None:
    """The Python sources the guest imports (mounted at /mnt/share/src)."""
    src = folder / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "BUILD")
    for package in (mockaccel_common, mockaccel_conformance, mockaccel_node):
        assert package.__file__ is not None
        shutil.copytree(Path(package.__file__).parent, src / package.__name__, ignore=ignore)


def junit_totals(report: Path) -> dict[str, int]:
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in ET.parse(report).getroot().iter("testsuite"):
        for key in totals:
            totals[key] += int(suite.get(key, 0))
    return totals


def record_property(name: str, value: object) -> None:
    """Timings go to the test's output (pants test --test-output=all); junit xunit2 has no properties."""
    print(f"TIMING {name}={value}", flush=True)


def suite_node_settings(provisioned: Provisioned, share: Path, work: Path, script: str) -> NodeSettings:
    """The conformance node booting ``provisioned``'s kernel with mock-accel.ko built against it,
    running ``script`` (a ``run_script``) from the share; the module's build time is recorded."""
    started = time.monotonic()
    module = build_module(provisioned.kdir, work / "build")
    record_property("module_build_s", round(time.monotonic() - started, 1))
    path = work / "run.sh"
    path.write_text(script)
    return NodeSettings(
        node=conformance_node(),
        run_dir=work / "node",
        module=module,
        provisioned=provisioned,
        share=share,
        run_script=path,
    )
