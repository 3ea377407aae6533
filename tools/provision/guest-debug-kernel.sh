#!/usr/bin/env bash
# Provision the debug guest kernel: the guest kernel's own Debian source
# package built with KASAN, lockdep, DEBUG_SHIRQ and DEBUG_KOBJECT_RELEASE,
# plus the build tree the kernel module is built against.
#
#   tools/provision/guest-debug-kernel.sh [--refresh]
#
# Why: the stock Debian guest kernel has none of the checkers, so a stress test
# that finds "no BUG in dmesg" cannot see a silent use-after-free or a lock
# inversion in mock-accel.ko. The source is the Debian `linux` source package
# of exactly the version tools/provision/guest-kernel.sh provisions (taken
# from the archive's deb-src of GUEST_KERNEL_SUITE; Debian's patches applied
# by dpkg-source), configured from `make tinyconfig` plus
# tools/provision/guest-debug-kernel.config, so a cold build takes minutes on
# two cores. Everything the guest needs (virtio-pci, 9p, ACPI/pxb-pcie, MSI)
# is built in: the debug guest loads no module but mock-accel.ko.
#
# Cached by the source version and the hash of the config fragment: a warm run
# only asks guest-kernel.sh (offline) and prints the paths. --refresh is passed
# on to guest-kernel.sh (re-resolve the version); a finished build is reused.
# An interrupted cold run resumes: the unpacked source and the configured tree
# are kept (stamp files), and make rebuilds only what is missing. Concurrent
# runs take turns on a lock, so two provisioners never build one tree at once.
#
# Output (stdout): GUEST_DEBUG_KVER=, GUEST_DEBUG_KDIR=, then
# GUEST_DEBUG_KERNEL=<bzImage> last.
# Build a module with: make -C "$GUEST_DEBUG_KDIR" M="$PWD" modules
set -euo pipefail

case "${1:-}" in -h | --help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;; esac

# shellcheck source=tools/lib/common.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../lib" && pwd)/common.sh"

FRAGMENT="$MOCKACCEL_REPO_ROOT/tools/provision/guest-debug-kernel.config"
COMPONENT_DIR="$MOCKACCEL_CACHE/guest-debug-kernel"
# gcc-12 is the compiler bookworm's kernels are built with; the rest is what
# the kernel build itself runs (kconfig, objtool, certificates, arithmetic).
BUILD_DEPS=(make gcc-12 libc6-dev bc bison flex libelf-dev libssl-dev dpkg-dev xz-utils python3)

report() {
	local dir=$1 kver
	kver=$(cat "$dir/KVER")
	printf 'GUEST_DEBUG_KVER=%s\n' "$kver"
	printf 'GUEST_DEBUG_KDIR=%s\n' "$dir/build"
	printf 'GUEST_DEBUG_KERNEL=%s\n' "$dir/bzImage"
}

# The Debian version of the stock guest kernel: guest-kernel.sh keeps each
# version in a folder named after it (…/guest-kernel/<version>/root/boot/vmlinuz-*).
guest_kernel=$("$MOCKACCEL_REPO_ROOT/tools/provision/guest-kernel.sh" "$@" | sed -n 's/^GUEST_KERNEL=//p')
[ -n "$guest_kernel" ] || die "tools/provision/guest-kernel.sh printed no GUEST_KERNEL"
ver=$(basename "$(dirname "$(dirname "$(dirname "$guest_kernel")")")")
key=$(sha256sum <"$FRAGMENT" | cut -c1-12)
DIR="$COMPONENT_DIR/$ver-$key"

if [ -f "$DIR/.complete" ]; then
	report "$DIR"
	exit 0
fi

mkdir -p "$COMPONENT_DIR"
exec 9>"$COMPONENT_DIR/.lock"
if ! flock -n 9; then
	log "another provisioner is building the debug kernel; waiting for it"
	flock 9
fi
if [ -f "$DIR/.complete" ]; then
	report "$DIR"
	exit 0
fi

ensure_apt "${BUILD_DEPS[@]}"
jobs=$(nproc)
UNPACKED="$DIR/src/.mockaccel-unpacked"
CONFIGURED="$DIR/build/.mockaccel-configured"

kmake() {
	make -C "$DIR/src" O="$DIR/build" ARCH=x86_64 \
		KBUILD_BUILD_USER=mockaccel KBUILD_BUILD_HOST=provision "$@"
}

fetch_source() {
	rm -rf "$DIR"
	mkdir -p "$DIR/dl"
	# apt's _apt user writes the downloads.
	chmod 755 "$DIR" "$DIR/dl"
	log "downloading the Debian linux $ver source package from $GUEST_KERNEL_SUITE (about 140 MB, once)"
	(cd "$DIR/dl" && suite_apt "$GUEST_KERNEL_SUITE" deb-src -- -o APT::Sandbox::User=root \
		source --download-only -qq "linux=$ver" >&2) ||
		die "downloading the linux $ver source package failed (has it left the $GUEST_KERNEL_SUITE archive? try guest-kernel.sh --refresh)"
	local dsc
	dsc=$(find "$DIR/dl" -name "linux_*.dsc" | head -n 1)
	[ -n "$dsc" ] || die "no linux_*.dsc downloaded for $ver"
	log "unpacking $(basename "$dsc") and applying Debian's patches"
	dpkg-source --no-check -x "$dsc" "$DIR/src" >&2
	# dpkg-source leaves a copy of the orig tarball beside the tree: 140 MB nobody reads.
	rm -rf "$DIR/dl" "$DIR"/linux_*.orig.tar.*
	head -n 1 "$DIR/src/debian/changelog" | grep -qF "($ver)" ||
		die "the unpacked source is not linux $ver: $(head -n 1 "$DIR/src/debian/changelog")"
	touch "$UNPACKED"
}

configure() {
	log "configuring: tinyconfig + $(basename "$FRAGMENT")"
	kmake -s tinyconfig >&2
	"$DIR/src/scripts/kconfig/merge_config.sh" -m -O "$DIR/build" "$DIR/build/.config" "$FRAGMENT" >&2
	kmake -s olddefconfig >&2
	# merge_config only warns about a symbol olddefconfig dropped (a missing
	# dependency); a debug kernel without its checkers must not pass silently.
	local line missing=()
	while IFS= read -r line; do
		case $line in CONFIG_*=*) ;; *) continue ;; esac
		grep -qxF "$line" "$DIR/build/.config" || missing+=("$line")
	done <"$FRAGMENT"
	[ ${#missing[@]} -eq 0 ] || die "the kernel config lost: ${missing[*]}"
	touch "$CONFIGURED"
}

if [ -f "$UNPACKED" ]; then log "resuming the build in $DIR"; else fetch_source; fi
[ -f "$CONFIGURED" ] || configure

log "building bzImage and modules with $jobs jobs"
started=$SECONDS
kmake -s -j"$jobs" bzImage modules >&2
log "kernel built in $((SECONDS - started)) s"
kver=$(cat "$DIR/build/include/config/kernel.release")
cp "$DIR/build/arch/x86/boot/bzImage" "$DIR/bzImage"

# Prove an external module builds against the tree and carries its vermagic.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/probe.c" <<'C'
#include <linux/module.h>
static int __init probe_init(void) { return 0; }
static void __exit probe_exit(void) { }
module_init(probe_init);
module_exit(probe_exit);
MODULE_LICENSE("GPL");
C
printf 'obj-m := probe.o\n' >"$tmp/Makefile"
make -s -C "$DIR/build" M="$tmp" modules >&2 ||
	die "the debug kernel tree cannot build a module"
tr '\0' '\n' <"$tmp/probe.ko" | grep -q "^vermagic=$kver " ||
	die "probe module vermagic does not match $kver"

printf '%s\n' "$kver" >"$DIR/KVER"
printf 'package=linux\nversion=%s\nsuite=%s\nconfig=%s\n' "$ver" "$GUEST_KERNEL_SUITE" "$key" >"$DIR/PROVENANCE"
touch "$DIR/.complete"
report "$DIR"
