#!/usr/bin/env bash
# Boot the mock-accel test guest in QEMU (TCG) with vfio-user devices attached.
#
# Why: every guest-side test (lspci checks, the kernel module's conformance
# suite) needs the same QEMU command line: a q35 machine whose RAM is a shared
# memfd (so vfio-user servers can map guest memory for DMA), a serial console
# captured to a log, no network or display, and one vfio-user-pci device per
# server socket, optionally behind a pxb-pcie expander on a given NUMA node.
# KVM guests hang on the CI machines, so this is always `-accel tcg`.
#
# services/vfio-server/mockaccel_vfio_server/testing/guest.py builds the same
# initramfs and QEMU command line in Python for tests in the Pants sandbox,
# where these scripts (and tools/lib/common.sh) are not available: keep both in step.
#
# Usage: boot.sh --initrd FILE [options] [-- extra QEMU args]
#   --initrd FILE       initramfs (tools/guest/mkinitramfs.sh)
#   --device SOCK[@N]   a vfio-user-pci device served on unix socket SOCK, on NUMA
#                       node N (repeatable; the server must already listen)
#   --numa N            number of NUMA nodes (default 1; N > 1 adds -smp N, one CPU
#                       (its own socket) and an equal share of RAM per node)
#   --virtfs DIR:TAG    share host folder DIR read-write as virtio-9p mount tag TAG
#                       (repeatable)
# Placement follows docs/abi.md section 6.1: NUMA node n gets a pxb-pcie with
# bus_nr 0x10*(n+1); its k-th device sits on root port addr k (bus E+1+k);
# devices without @N sit on root ports 0x10+k of pcie.0 (bus 1+k). Expanders
# are created highest node first, because QEMU lists them in reverse creation
# order in ACPI and Linux probes root bridges in ACPI order: so PFs probe (and
# get their mockN names) in ascending bus order.
#   --mem MB            guest RAM (default 512)
#   --log FILE          serial log (default: a temp file, printed to stdout at exit)
#   --append ARGS       extra kernel command line (e.g. mockaccel.run=/x.sh)
#   --timeout SEC       hard stop for QEMU (default 300)
#   --kernel FILE       guest kernel (default: tools/provision/guest-kernel.sh)
#   --qemu FILE         QEMU binary (default: tools/provision/qemu.sh)
#   --print-cmd         print the QEMU command line to stderr before running it
# Exit status: the guest's MOCKACCEL_EXIT value, 124 on timeout, 125 when the
# guest printed no MOCKACCEL_EXIT line (crash, panic, QEMU error).
set -euo pipefail

# shellcheck source=tools/lib/common.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../lib" && pwd)/common.sh"

initrd='' kernel='' qemu='' log='' append='' numa=1 mem=512 timeout_s=300 print_cmd=0
devices=()
virtfs=()
ports=()
extra=()
while [ $# -gt 0 ]; do
	case $1 in
	--initrd) initrd=$2; shift 2 ;;
	--device) devices+=("$2"); shift 2 ;;
	--virtfs) virtfs+=("$2"); shift 2 ;;
	--numa) numa=$2; shift 2 ;;
	--mem) mem=$2; shift 2 ;;
	--log) log=$2; shift 2 ;;
	--append) append=$2; shift 2 ;;
	--timeout) timeout_s=$2; shift 2 ;;
	--kernel) kernel=$2; shift 2 ;;
	--qemu) qemu=$2; shift 2 ;;
	--print-cmd) print_cmd=1; shift ;;
	--) shift; extra=("$@"); break ;;
	*) die "unknown option $1 (see the header of $0)" ;;
	esac
done
[ -n "$initrd" ] || die "--initrd is required"
[ -f "$initrd" ] || die "no initramfs $initrd"
[ "$numa" -ge 1 ] || die "--numa must be >= 1"

last_value() { tail -n 1 | cut -d= -f2-; }
[ -n "$qemu" ] || qemu=$("$MOCKACCEL_REPO_ROOT/tools/provision/qemu.sh" | last_value)
[ -n "$kernel" ] || kernel=$("$MOCKACCEL_REPO_ROOT/tools/provision/guest-kernel.sh" | last_value)

print_log=0
if [ -z "$log" ]; then
	log=$(mktemp)
	print_log=1
	trap 'rm -f "$log"' EXIT
fi
: >"$log"

args=(-accel tcg -nographic -no-reboot -nic none -vga none -monitor none
	-serial "file:$log" -m "${mem}M"
	-kernel "$kernel" -initrd "$initrd"
	-append "console=ttyS0 panic=-1 $append")

# Guest RAM is a shared memfd, as vfio-user DMA needs; with NUMA, one backend
# per node, each node owning one CPU.
if [ "$numa" -eq 1 ]; then
	args+=(-machine 'q35,memory-backend=mem'
		-object "memory-backend-memfd,id=mem,size=${mem}M,share=on")
else
	[ $((mem % numa)) -eq 0 ] || die "--mem $mem is not divisible by --numa $numa"
	args+=(-machine q35 -smp "$numa,sockets=$numa,cores=1,threads=1")
	for ((n = 0; n < numa; n++)); do
		args+=(-object "memory-backend-memfd,id=mem$n,size=$((mem / numa))M,share=on"
			-numa "node,nodeid=$n,cpus=$n,memdev=mem$n")
	done
fi

# Each device sits on its own PCIe root port: on the root complex, or on the
# pxb-pcie expander of its NUMA node (docs/abi.md section 6.1).
declare -A slots_of_node=()
expanders=()
root_slot=0
i=0
for spec in "${devices[@]}"; do
	sock=${spec%@*}
	node=
	[ "$sock" = "$spec" ] || node=${spec##*@}
	[ -S "$sock" ] || die "no vfio-user socket at $sock (start the server first)"
	if [ -n "$node" ]; then
		[ "$node" -lt "$numa" ] || die "device $sock on node $node, but --numa is $numa"
		slot=${slots_of_node[$node]:-0}
		[ "$slot" -lt 15 ] || die "more than 15 devices on NUMA node $node"
		slots_of_node[$node]=$((slot + 1))
		bus=pxb$node
		addr=$slot
	else
		bus=pcie.0
		addr=$((0x10 + root_slot))
		root_slot=$((root_slot + 1))
	fi
	ports+=(-device "pcie-root-port,id=rp$i,bus=$bus,addr=$(printf '0x%x' "$addr"),chassis=$((i + 1)),slot=$i"
		-device "{\"driver\":\"vfio-user-pci\",\"bus\":\"rp$i\",\"socket\":{\"path\":\"$sock\",\"type\":\"unix\"}}")
	i=$((i + 1))
done
for ((n = numa - 1; n >= 0; n--)); do
	[ -n "${slots_of_node[$n]:-}" ] || continue
	expanders+=(-device "pxb-pcie,id=pxb$n,bus_nr=$((0x10 * (n + 1))),numa_node=$n,bus=pcie.0")
done
args+=("${expanders[@]}" "${ports[@]}")
j=0
for share in "${virtfs[@]}"; do
	dir=${share%:*}
	tag=${share##*:}
	[ -d "$dir" ] || die "--virtfs: no folder $dir"
	args+=(-fsdev "local,id=fs$j,path=$dir,security_model=none"
		-device "virtio-9p-pci,fsdev=fs$j,mount_tag=$tag,bus=pcie.0")
	j=$((j + 1))
done
args+=("${extra[@]}")

if [ $print_cmd = 1 ]; then
	printf '%q ' "$qemu" "${args[@]}" >&2
	printf '\n' >&2
fi

start=$(date +%s.%N)
set +e
timeout --kill-after=5 "$timeout_s" "$qemu" "${args[@]}" </dev/null >&2
qemu_rc=$?
set -e
end=$(date +%s.%N)

# SeaBIOS and the kernel write ANSI escapes and CRs; keep the log plain text.
# shellcheck disable=SC1003 # '$a\' is sed's "end with a newline" idiom
sed -i -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1bc//g' -e 's/\r//g' -e '$a\' "$log"
[ $print_log = 0 ] || cat "$log"
log "QEMU exited $qemu_rc after $(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.1f", b - a}') s"

if [ $qemu_rc -eq 124 ] || [ $qemu_rc -eq 137 ]; then
	log "timed out after $timeout_s s"
	exit 124
fi
rc=$(grep -a '^MOCKACCEL_EXIT=' "$log" | tail -n 1 | cut -d= -f2)
[ -n "$rc" ] || { log "the guest reported no MOCKACCEL_EXIT (QEMU status $qemu_rc); see the log"; exit 125; }
exit "$rc"
