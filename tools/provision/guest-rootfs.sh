#!/usr/bin/env bash
# Provision the guest's Python root file system and the in-tree kernel modules
# the guest needs to mount it (and for its virtio network card: the controller
# in the guest reaches the host's API server over QEMU user networking).
#
# Why: the ABI conformance suite is Python, and it must run inside the guest
# against the real driver with the same assertions it runs on the host against
# the simulator. The busybox initramfs has no Python, so a Debian bookworm
# minbase tree with python3 (3.11, the host's version) and pytest is built
# here once and shared into the guest read-only over virtio-9p, where the
# initramfs chroots into it. 9p and virtio-pci are modules in the Debian
# kernel; they are taken from the linux-image .deb that guest-kernel.sh keeps
# in its cache, so they always match the booted kernel.
#
# The rootfs folder is named after the suite and the package list, so changing
# GUEST_ROOTFS_PACKAGES builds a new one and an old one is never half-reused.
#
# Output (stdout): GUEST_9P_MODULES=<dir with .ko files and an `order` file>,
# then GUEST_ROOTFS=<dir> last; the same lines go to
# $MOCKACCEL_CACHE/guest-rootfs/current.env.
set -euo pipefail

# shellcheck source=tools/lib/common.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../lib" && pwd)/common.sh"

SUITE=${GUEST_ROOTFS_SUITE:-bookworm}
PACKAGES=${GUEST_ROOTFS_PACKAGES:-python3,python3-pytest,kmod}
# Load order of the modules that mount a virtio-9p share (dependencies first).
MODULES_9P=(
	kernel/drivers/virtio/virtio.ko
	kernel/drivers/virtio/virtio_ring.ko
	kernel/drivers/virtio/virtio_pci_legacy_dev.ko
	kernel/drivers/virtio/virtio_pci_modern_dev.ko
	kernel/drivers/virtio/virtio_pci.ko
	kernel/fs/netfs/netfs.ko
	kernel/fs/fscache/fscache.ko
	kernel/net/9p/9pnet.ko
	kernel/net/9p/9pnet_virtio.ko
	kernel/fs/9p/9p.ko
	kernel/net/core/failover.ko
	kernel/drivers/net/net_failover.ko
	kernel/drivers/net/virtio_net.ko
)

value() { sed -n "s/^$1=//p" | tail -n 1; }
guest=$("$MOCKACCEL_REPO_ROOT/tools/provision/guest-kernel.sh")
kver=$(printf '%s\n' "$guest" | value GUEST_KVER)
kernel=$(printf '%s\n' "$guest" | value GUEST_KERNEL)
kernel_dir=$(dirname "$(dirname "$(dirname "$kernel")")")

key=$(printf '%s %s\n' "$SUITE" "$PACKAGES" | sha256sum | cut -c1-12)
DIR="$MOCKACCEL_CACHE/guest-rootfs/$SUITE-$key"
# Named after the module list too, so adding a module never reuses an old folder.
modkey=$(printf '%s\n' "${MODULES_9P[@]}" | sha256sum | cut -c1-8)
MODDIR="$MOCKACCEL_CACHE/guest-rootfs/modules-$kver-$modkey"

# The pointer file lets tools find the current rootfs through MOCKACCEL_CACHE alone.
report() {
	local pointer="$MOCKACCEL_CACHE/guest-rootfs/current.env"
	printf 'GUEST_9P_MODULES=%s\nGUEST_ROOTFS=%s\n' "$MODDIR" "$DIR/root" >"$pointer.tmp"
	mv "$pointer.tmp" "$pointer"
	cat "$pointer"
}

if [ ! -f "$MODDIR/.complete" ]; then
	deb=$(find "$kernel_dir/debs" -name "linux-image-${kver}_*.deb" | head -n 1)
	[ -n "$deb" ] || die "no linux-image-$kver .deb in $kernel_dir/debs (run tools/provision/guest-kernel.sh --refresh)"
	rm -rf "$MODDIR"
	mkdir -p "$MODDIR"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	dpkg-deb --fsys-tarfile "$deb" |
		tar -x -C "$tmp" "${MODULES_9P[@]/#/./lib/modules/$kver/}"
	: >"$MODDIR/order"
	for m in "${MODULES_9P[@]}"; do
		cp "$tmp/lib/modules/$kver/$m" "$MODDIR/"
		basename "$m" >>"$MODDIR/order"
	done
	touch "$MODDIR/.complete"
fi

if [ -f "$DIR/.complete" ]; then
	report
	exit 0
fi

command -v mmdebstrap >/dev/null 2>&1 || ensure_apt mmdebstrap
rm -rf "$DIR"
mkdir -p "$DIR"
log "mmdebstrap --variant=minbase $SUITE ($PACKAGES)"
mmdebstrap --quiet --variant=minbase --include="$PACKAGES" \
	--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	"$SUITE" "$DIR/root" "$(debian_mirror)" >&2 || die "mmdebstrap of $SUITE failed"
# Mount points the guest's /init binds into the chroot.
mkdir -p "$DIR/root/mockaccel" "$DIR/root/modules"
"$DIR/root/usr/bin/python3" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' ||
	die "the $SUITE rootfs has no Python 3.11"
touch "$DIR/.complete"
report
