"""The kernel-only checks on the debug guest kernel: KASAN, lockdep, DEBUG_SHIRQ, DEBUG_KOBJECT_RELEASE.

The stock Debian kernel cannot see a silent use-after-free or a lock inversion,
so "no BUG in dmesg" proves little there. This run boots the kernel
tools/provision/guest-debug-kernel.sh builds from the same Debian source, builds
mock-accel.ko against it, and runs every ``*_kernel_test.py`` check (stress,
load/unload and VF enable/disable loops, health faults, /dev nodes open during
remove) in the guest. Any report of the checkers in the kernel log fails it.

So that a quiet log means something, the guest then loads a probe module that
reads freed memory and takes two mutexes in both orders: the run fails unless
KASAN and lockdep report exactly that, after the suite's part of the log.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from mockaccel_guest_run.guest_suite import (
    READY_TIMEOUT_S,
    SUITE,
    junit_totals,
    record_property,
    run_script,
    suite_node_settings,
)
from mockaccel_node.node import KERNEL_PROBLEM, EmulatedNode
from mockaccel_node.settings import KernelFlavor, Provisioned

# KASAN and lockdep slow the TCG guest down about threefold against the stock kernel.
GUEST_TIMEOUT_S = 1500.0
PROBE_MARKER = "MOCKACCEL_CHECKER_PROBE"
PROBE_SOURCE = r"""// SPDX-License-Identifier: GPL-2.0
/* Proves the debug kernel's checkers report: a use-after-free and an AB-BA lock order. */
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>

static DEFINE_MUTEX(probe_a);
static DEFINE_MUTEX(probe_b);

static int __init checker_probe_init(void)
{
	char *volatile p;

	/* Lockdep first: a KASAN report taints the kernel, which turns lockdep off. */
	mutex_lock(&probe_a);
	mutex_lock(&probe_b);
	mutex_unlock(&probe_b);
	mutex_unlock(&probe_a);
	mutex_lock(&probe_b);
	mutex_lock(&probe_a);
	mutex_unlock(&probe_a);
	mutex_unlock(&probe_b);

	p = kmalloc(64, GFP_KERNEL);
	if (!p)
		return -ENOMEM;
	kfree(p);
	pr_info("checker_probe: freed byte %d\n", READ_ONCE(p[8]));
	return -EAGAIN;
}
module_init(checker_probe_init);
MODULE_LICENSE("GPL");
"""
# After the suite: keep the suite's kernel log apart, then load the probe (from the share).
AFTER_SUITE = f"""dmesg >/mnt/share/dmesg-suite.txt
echo "{PROBE_MARKER}"
insmod /mnt/share/checker_probe.ko
sleep 1
"""
KASAN_REPORT = "BUG: KASAN: use-after-free in checker_probe_init"
LOCKDEP_REPORT = "WARNING: possible circular locking dependency detected"


def _build_probe(kdir: Path, folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "checker_probe.c").write_text(PROBE_SOURCE)
    (folder / "Kbuild").write_text("obj-m := checker_probe.o\n")
    subprocess.run(["make", "-s", "-C", str(kdir), f"M={folder}", "modules"], check=True, capture_output=True)
    return folder / "checker_probe.ko"


@pytest.mark.timeout(GUEST_TIMEOUT_S + 180)
def test_kernel_checks_on_the_debug_kernel(share: Path, tmp_path: Path) -> None:
    provisioned = Provisioned.from_env(flavor=KernelFlavor.DEBUG)
    assert provisioned.modules_9p == (), "the debug kernel has 9p and virtio built in"
    script = run_script(f"{SUITE}/*_kernel_test.py", after=AFTER_SUITE, watchdog_s=900)
    settings = suite_node_settings(provisioned, share, tmp_path, script)
    (share / "checker_probe.ko").write_bytes(_build_probe(provisioned.kdir, tmp_path / "probe").read_bytes())
    with EmulatedNode(settings) as node:
        record_property("boot_to_ready_s", round(node.wait_ready(timeout=READY_TIMEOUT_S), 1))
        status = node.wait_exit(GUEST_TIMEOUT_S)
        record_property("guest_run_s", round(time.monotonic() - node.started, 1))
        text = node.text()
        exit_codes = node.server_exit_codes()

    output = (share / "pytest.txt").read_text() if (share / "pytest.txt").exists() else "(no pytest output)"
    assert status == 0, f"guest checks failed ({status}):\n{output[-6000:]}\n--- serial log ---\n{node.tail(text)}"
    totals = junit_totals(share / "junit-guest.xml")
    record_property("guest_tests", totals["tests"])
    assert totals["failures"] == totals["errors"] == totals["skipped"] == 0, output[-6000:]
    assert totals["tests"] >= 10, totals
    assert exit_codes == [None] * len(settings.node.pfs), exit_codes

    suite_log, marker, probe_log = text.partition(PROBE_MARKER)
    assert marker, f"the guest never reached the checker probe\n{node.tail(text)}"
    dmesg = (share / "dmesg-suite.txt").read_text()
    # A report pushed out of the ring before this copy would pass unseen (log_buf_len, plan.py).
    assert dmesg.startswith("[    0.000000]"), f"the kernel log wrapped before it was saved:\n{dmesg[:300]}"
    assert "KernelAddressSanitizer initialized" in dmesg, "the guest did not boot the KASAN kernel"
    problems = [line for line in (suite_log + dmesg).splitlines() if KERNEL_PROBLEM.search(line)]
    assert not problems, "the debug kernel reported problems:\n" + "\n".join(problems[:60])
    # The checkers are live: the probe's bugs are reported (on the console, at loglevel 5).
    full = probe_log + (share / "dmesg.txt").read_text()
    assert KASAN_REPORT in full, f"KASAN did not report the probe's use-after-free\n{node.tail(probe_log)}"
    assert LOCKDEP_REPORT in full, f"lockdep did not report the probe's AB-BA order\n{node.tail(probe_log)}"
