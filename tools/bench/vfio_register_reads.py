#!/usr/bin/env python3
"""Guest register reads per second through QEMU: our vfio-server vs libvfio-user's C sample.

    ./pants run tools/bench/vfio_register_reads.py -- [--reads N] [--devmem N] [--rounds R]

(or ``$PY tools/bench/vfio_register_reads.py`` from the repository, see
docs/performance.md). The repository is found from the working directory
(``git rev-parse``), not from ``__file__``: under ``pants run`` the script may
be a copy in a sandbox. Its BUILD target runs it in the build root.

One guest boot (mockaccel_testing.guest, TCG) with three vfio-user devices: our
server (the packaged pex, as deployed) and the C sample ``gpio-pci-idio-16``
(the sample ``server`` does not work with this QEMU; ``null`` has no BAR).
Inside the guest, ``guest_reader`` (tools/bench/guest_reader.c, built static
here) reads one register N times in a tight loop and times itself with
CLOCK_MONOTONIC: ours through an mmap of BAR0 (ID register), the C sample's
through inb() on its I/O BAR (the only BAR it has). Each access is one
vfio-user REGION_READ round trip either way. The rounds alternate the order.
A busybox ``devmem`` loop on our BAR0 is also timed (from dmesg timestamps),
to show how much of a shell loop is process start-up rather than device.

Because the C sample's BAR is an I/O BAR and ours a memory BAR, a third device
calibrates the difference: the same C sample recompiled with
``VFU_REGION_FLAG_MEM`` on its BAR (nothing else changed), read through mmap
like ours. "ours vs C (MMIO)" is then the like-for-like server comparison.

``--baseline-pex PEX`` adds a fourth device: another build of our server
(e.g. the previous commit's, ``./pants package`` in a second checkout), told
apart in the guest by its MEMORY_SIZE register, so a change is measured
before/after in one guest under the same load.

Prints numbers; it is not a test. Needs: gcc (static glibc), the provisioned
QEMU, guest kernel and libvfio-user (tools/provision/*.sh), and ./pants to
package the server.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mockaccel_testing.guest import GuestRun


def repo_root() -> Path:
    """The checkout the bench runs from: the provision scripts, ./pants and guest_reader.c live there."""
    try:
        out = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(f"run this from inside the repository ({exc})") from exc
    root = Path(out.stdout.strip())
    if not (root / "tools/provision").is_dir():
        raise SystemExit(f"{root} is not a mock-accel checkout (no tools/provision)")
    return root


ROOT = repo_root()


def provisioned(script: str, key: str) -> str:
    command = [str(ROOT / "tools/provision" / script)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return values[key]


def package_server() -> Path:
    target = "services/vfio-server/mockaccel_vfio_server:vfio-server"
    # A nested pants while `pants run` holds pantsd: run it without the daemon.
    env = {**os.environ, "PANTS_CONCURRENT": "True"}
    subprocess.run(["./pants", "package", target], cwd=ROOT, env=env, check=True)
    return ROOT / "dist/services.vfio-server.mockaccel_vfio_server/vfio-server.pex"


def build_c_mmio_variant(source: Path, prefix: Path, work: Path) -> Path:
    """The C sample with its BAR declared as memory (VFU_REGION_FLAG_MEM); nothing else changed."""
    original = (source / "samples/gpio-pci-idio-16.c").read_text()
    patched = original.replace(
        "&bar2_access, VFU_REGION_FLAG_RW, NULL", "&bar2_access, VFU_REGION_FLAG_RW | VFU_REGION_FLAG_MEM, NULL"
    )
    if patched == original:
        raise SystemExit("could not find the BAR2 setup in gpio-pci-idio-16.c to patch")
    c_file, binary = work / "gpio_mmio.c", work / "gpio_mmio"
    c_file.write_text(patched)
    subprocess.run(
        ["gcc", "-O2", f"-I{source}/include", f"-I{source}/lib", "-o", str(binary), str(c_file),
         f"-L{prefix}/lib", f"-Wl,-rpath,{prefix}/lib", "-lvfio-user"],
        check=True,
    )  # fmt: skip
    return binary


def wait_for_socket(path: Path, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"server for {path} did not start (exit {process.returncode})")
        time.sleep(0.05)


BASELINE_MEMORY = 0x12345678  # the baseline server's MEMORY_SIZE, how the guest tells it from ours

GUEST_SCRIPT = """
for d in /sys/bus/pci/devices/*; do
    case $(cat $d/vendor):$(cat $d/device) in
    0x1de5:0x0001)
        echo 1 > $d/enable
        b=$(( $(sed -n 1p $d/resource | cut -d' ' -f1) ))
        [ $(( $(devmem $((b + 0x20)) 32) )) = {baseline_memory} ] && base=$d || ours=$d ;;
    0x494f:0x0dc8) [ $(( $(sed -n 3p $d/resource | cut -d' ' -f3) & 0x100 )) != 0 ] && c=$d || cmem=$d ;;
    esac
done
[ -n "$ours" ] && [ -n "$c" ] && [ -n "$cmem" ] || { echo "devices missing"; exit 1; }
[ {with_base} = 0 ] || [ -n "$base" ] || { echo "baseline device missing"; exit 1; }
for d in $c $cmem; do echo 1 > $d/enable; done
bar=$(( $(sed -n 1p $ours/resource | cut -d' ' -f1) ))
port=$(( $(sed -n 3p $c/resource | cut -d' ' -f1) ))
cbar=$(( $(sed -n 3p $cmem/resource | cut -d' ' -f1) ))
[ -z "$base" ] || bbar=$(( $(sed -n 1p $base/resource | cut -d' ' -f1) ))
run() {
    case $1 in
    base) [ -z "$base" ] || echo "BENCH base $(/guest_reader mmio $bbar {reads})" ;;
    ours) echo "BENCH ours $(/guest_reader mmio $bar {reads})" ;;
    c) echo "BENCH c $(/guest_reader port $port {reads})" ;;
    cmem) echo "BENCH cmem $(/guest_reader mmio $cbar {reads})" ;;
    esac
}
/guest_reader mmio $bar 10 >/dev/null; /guest_reader port $port 10 >/dev/null; /guest_reader mmio $cbar 10 >/dev/null
r=0
while [ $r -lt {rounds} ]; do
    case $((r % 3)) in
    0) run ours; run c; run cmem; run base ;;
    1) run c; run cmem; run base; run ours ;;
    2) run cmem; run base; run ours; run c ;;
    esac
    r=$((r + 1))
done
echo "<3>DEVMEM_START" > /dev/kmsg
i=0; while [ $i -lt {devmem} ]; do devmem $bar 32 >/dev/null; i=$((i + 1)); done
echo "<3>DEVMEM_END" > /dev/kmsg
dmesg | grep DEVMEM_
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reads", type=int, default=5000, help="reads per guest_reader run")
    parser.add_argument("--rounds", type=int, default=4, help="guest_reader runs per server")
    parser.add_argument("--devmem", type=int, default=300, help="busybox devmem reads (our server)")
    parser.add_argument("--baseline-pex", type=Path, help="another build of our server, measured alongside")
    args = parser.parse_args()

    prefix = Path(provisioned("libvfio-user.sh", "LIBVFIO_USER_PREFIX"))
    source = Path(provisioned("libvfio-user.sh", "LIBVFIO_USER_SRC"))
    os.environ.setdefault("MOCKACCEL_QEMU", provisioned("qemu.sh", "QEMU"))
    os.environ.setdefault("MOCKACCEL_GUEST_KERNEL", provisioned("guest-kernel.sh", "GUEST_KERNEL"))
    pex = package_server()

    with tempfile.TemporaryDirectory(prefix="bench-", dir="/tmp") as tmp:
        work = Path(tmp)
        reader = work / "guest_reader"
        reader_source = ROOT / "tools/bench/guest_reader.c"
        subprocess.run(["gcc", "-O2", "-static", "-o", str(reader), str(reader_source)], check=True)
        c_mem = build_c_mmio_variant(source, prefix, work)
        script = (
            GUEST_SCRIPT.replace("{reads}", str(args.reads))
            .replace("{rounds}", str(args.rounds))
            .replace("{devmem}", str(args.devmem))
            .replace("{baseline_memory}", str(BASELINE_MEMORY))
            .replace("{with_base}", "1" if args.baseline_pex else "0")
        )

        ours_sock, c_sock, cmem_sock = work / "ours.sock", work / "c.sock", work / "cmem.sock"
        env = {**os.environ, "MOCKACCEL_LIBVFIO_USER_PREFIX": str(prefix), "MOCKACCEL_LOG_LEVEL": "warning"}
        ours = subprocess.Popen([str(pex), "--total-vfs", "0", str(ours_sock)], env=env, stdout=subprocess.DEVNULL)
        c_server = subprocess.Popen([str(prefix / "bin/gpio-pci-idio-16"), str(c_sock)], stdout=subprocess.DEVNULL)
        cmem_server = subprocess.Popen([str(c_mem), str(cmem_sock)], stdout=subprocess.DEVNULL)
        sockets = [ours_sock, c_sock, cmem_sock]
        base = None
        if args.baseline_pex:
            base_sock = work / "base.sock"
            base_args = ["-m", str(BASELINE_MEMORY), "--total-vfs", "0", str(base_sock)]
            base = subprocess.Popen([str(args.baseline_pex.resolve()), *base_args], env=env, stdout=subprocess.DEVNULL)
            sockets.append(base_sock)
        try:
            wait_for_socket(ours_sock, ours)
            wait_for_socket(c_sock, c_server)
            wait_for_socket(cmem_sock, cmem_server)
            if base is not None:
                wait_for_socket(sockets[-1], base)
            files = {"guest_reader": (0o755, reader.read_bytes())}
            with GuestRun(work, sockets, script, timeout=1800, files=files) as guest:
                rc = guest.finish()
                text = guest.text()
        finally:
            for python_server in (ours, base):
                if python_server is not None:
                    python_server.send_signal(signal.SIGTERM)
            for c in (c_server, cmem_server):
                c.kill()
                c.wait(10)
            ours.wait(10)
            if base is not None:
                base.wait(10)
    if rc != 0:
        print(text[-3000:])
        return 1

    rates: dict[str, list[float]] = {"ours": [], "c": [], "cmem": [], "base": []}
    for server, n, ns in re.findall(r"BENCH (\w+) READER kind=\w+ n=(\d+) ns=(\d+)", text):
        rates[server].append(int(n) / (int(ns) / 1e9))
    marks = {name: float(t) for t, name in re.findall(r"\[\s*([\d.]+)\] (DEVMEM_\w+)", text)}
    median = {k: statistics.median(v) for k, v in rates.items() if v}
    labels = {
        "ours": "mock-accel vfio-server (Python), MMIO BAR0",
        "c": "C sample gpio-pci-idio-16, I/O BAR (as shipped)",
        "cmem": "C sample gpio-pci-idio-16 recompiled, MMIO BAR",
    }
    if rates["base"]:
        labels["base"] = f"baseline {args.baseline_pex.name}, MMIO BAR0"
    print(f"guest register reads/s through QEMU TCG ({args.reads} reads x {args.rounds} rounds, median):")
    for key, label in labels.items():
        runs = [round(r) for r in rates[key]]
        print(f"  {label:<50} {median[key]:8.0f} /s  ({1e6 / median[key]:5.1f} us/read)  runs {runs}")
    print(f"  ratio ours / C sample (I/O BAR):  {median['ours'] / median['c']:.2f}")
    print(f"  ratio ours / C sample (MMIO BAR): {median['ours'] / median['cmem']:.2f}  (goal >= 1.0)")
    # Each round runs the three readers back to back, so a per-round ratio compares runs
    # made under the same load; its median is less moved by load swings between rounds.
    paired = [o / c for o, c in zip(rates["ours"], rates["cmem"], strict=True)]
    print(f"  ratio ours / C sample (MMIO BAR), median of per-round ratios: {statistics.median(paired):.2f}"
          f"  (rounds {[round(r, 2) for r in paired]})")  # fmt: skip
    if rates["base"]:
        per_round = [o / b for o, b in zip(rates["ours"], rates["base"], strict=True)]
        print(f"  ratio ours / baseline: {median['ours'] / median['base']:.2f}, median of per-round ratios:"
              f" {statistics.median(per_round):.2f}  (rounds {[round(r, 2) for r in per_round]})")  # fmt: skip
        print(f"  ratio baseline / C sample (MMIO BAR): {median['base'] / median['cmem']:.2f}")
    if "DEVMEM_START" in marks and "DEVMEM_END" in marks:
        span = marks["DEVMEM_END"] - marks["DEVMEM_START"]
        print(f"  busybox devmem loop on our BAR0: {args.devmem / span:.0f} reads/s (one process per read)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
