#!/usr/bin/env bash
# Provision the guest kernel (a Debian vmlinuz) and the matching kbuild tree for
# building our kernel module, plus the host tools the guest initramfs needs.
#
# Why: the QEMU guest boots a stock Debian kernel, and the module must be built
# against exactly that kernel's headers. The image and the headers (arch,
# common, kbuild) are extracted with `dpkg -x` into the cache rather than
# installed, so the host's packages and running kernel are never touched and
# image and headers come from one resolution of GUEST_KERNEL_SUITE. The kbuild
# helpers need the gcc the kernel was built with (gcc-12 on bookworm).
#
# The kernel ABI is resolved from GUEST_KERNEL_SUITE at the first run (old ABIs
# leave the archive) and remembered in the cache, so warm runs stay offline;
# `--refresh` resolves again.
#
# Output (stdout): GUEST_KVER=, GUEST_KDIR=, then GUEST_KERNEL=<vmlinuz> last.
# Build a module with: make -C "$GUEST_KDIR" M="$PWD" modules
set -euo pipefail

# shellcheck source=tools/lib/common.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../lib" && pwd)/common.sh"

[ -n "${GUEST_KERNEL_SUITE:-}" ] || die "GUEST_KERNEL_SUITE is empty in tools/versions.env"

COMPONENT_DIR="$MOCKACCEL_CACHE/guest-kernel"
RESOLVED="$COMPONENT_DIR/resolved-$GUEST_KERNEL_SUITE"
HOST_TOOLS=(busybox-static cpio make gcc-12 libc6-dev)

report() {
	local dir=$1 kver
	kver=$(cat "$dir/KVER")
	printf 'GUEST_KVER=%s\n' "$kver"
	printf 'GUEST_KDIR=%s\n' "$dir/root/usr/src/linux-headers-$kver"
	printf 'GUEST_KERNEL=%s\n' "$dir/root/boot/vmlinuz-$kver"
}

host_tools_present() {
	local p
	for p in "${HOST_TOOLS[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || return 1
	done
}

if host_tools_present && dir=$(remembered_build "$COMPONENT_DIR" "$GUEST_KERNEL_SUITE" "$@"); then
	report "$dir"
	exit 0
fi

ensure_apt "${HOST_TOOLS[@]}"

# linux-image-amd64 is a metapackage; its Depends names the current ABI.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && suite_apt "$GUEST_KERNEL_SUITE" -- -o APT::Sandbox::User=root download -qq linux-image-amd64 >&2) ||
	die "downloading linux-image-amd64 from $GUEST_KERNEL_SUITE failed"
meta=$(find "$tmp" -name 'linux-image-amd64_*.deb' | head -n 1)
ver=$(dpkg-deb -f "$meta" Version)
kver=$(dpkg-deb -f "$meta" Depends | grep -oE 'linux-image-[0-9][^ ,]*-amd64' | head -n 1)
kver=${kver#linux-image-}
[ -n "$kver" ] || die "cannot read the kernel ABI from $(basename "$meta")"
kver=${kver%-unsigned}
log "guest kernel in $GUEST_KERNEL_SUITE: $kver (linux $ver)"

DIR="$COMPONENT_DIR/$ver"
if [ -f "$DIR/.complete" ]; then
	printf '%s\n' "$ver" >"$RESOLVED"
	report "$DIR"
	exit 0
fi

rm -rf "$DIR"
mkdir -p "$DIR/debs" "$DIR/root"
# The arch headers package depends on the common headers and kbuild packages of
# the same source version; linux-kbuild-X.Y is named after the upstream series.
series=$(printf '%s\n' "$kver" | cut -d. -f1,2)
(cd "$DIR/debs" && suite_apt "$GUEST_KERNEL_SUITE" -- -o APT::Sandbox::User=root download -qq \
	"linux-image-$kver" "linux-headers-$kver" "linux-headers-${kver%-amd64}-common" \
	"linux-kbuild-$series" >&2) || die "downloading the $kver image and headers failed"

# Only /boot of the image (vmlinuz, config, System.map); the .deb stays in the
# cache so later work can pull modules out of it.
dpkg-deb --fsys-tarfile "$DIR/debs/linux-image-${kver}_"*.deb | tar -x -C "$DIR/root" ./boot
for d in "$DIR/debs"/linux-headers-*.deb "$DIR/debs"/linux-kbuild-*.deb; do
	dpkg -x "$d" "$DIR/root"
	rm -f "$d"
done

# The arch headers refer to the common headers and kbuild by absolute /usr
# paths; point them into the cache tree instead.
KDIR="$DIR/root/usr/src/linux-headers-$kver"
[ -d "$KDIR" ] || die "no $KDIR after extraction"
grep -rlF --include=Makefile '/usr/src/' "$KDIR" | while read -r f; do
	sed -i "s#/usr/src/#$DIR/root/usr/src/#g" "$f"
done
for l in "$KDIR"/* "$DIR/root/usr/src/linux-headers-${kver%-amd64}-common"/*; do
	[ -L "$l" ] || continue
	case $(readlink "$l") in
	/usr/*) ln -sfn "$DIR/root$(readlink "$l")" "$l" ;;
	esac
done

# Prove the kbuild tree builds a module with the host gcc-12.
mod="$tmp/probe"
mkdir -p "$mod"
cat >"$mod/probe.c" <<'EOF'
#include <linux/module.h>
static int __init probe_init(void) { return 0; }
static void __exit probe_exit(void) { }
module_init(probe_init);
module_exit(probe_exit);
MODULE_LICENSE("GPL");
EOF
printf 'obj-m := probe.o\n' >"$mod/Makefile"
make -s -C "$KDIR" M="$mod" modules >&2 || die "kbuild in $KDIR cannot build a module"
tr '\0' '\n' <"$mod/probe.ko" | grep -q "^vermagic=$kver " ||
	die "probe module vermagic does not match $kver"

printf '%s\n' "$kver" >"$DIR/KVER"
touch "$DIR/.complete"
printf '%s\n' "$ver" >"$RESOLVED"
report "$DIR"
