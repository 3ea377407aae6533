#!/usr/bin/env bash
# Provision every real part the tests use, then write the environment file
# that points the tests at them. Idempotent: a warm run takes about a second.
#
#   tools/provision/all.sh        # prints the path of the environment file
#
# The environment file ($MOCKACCEL_CACHE/env.sh) exports MOCKACCEL_* variables;
# tools/test sources it, and pants.toml passes those names into test sandboxes.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tools/lib/common.sh
. "$here/../lib/common.sh"

ensure_apt build-essential git ca-certificates curl cpio busybox-static

step() {
	local started=$SECONDS
	log "provisioning $1"
	"$here/$1.sh"
	log "provisioned $1 in $((SECONDS - started)) s"
}

# Pants first: its bootstrap is what every later command needs.
(cd "$MOCKACCEL_REPO_ROOT" && ./pants --version >/dev/null)

kube=$(step kubernetes)
libvfio=$(step libvfio-user)
qemu=$(step qemu)
guest=$(step guest-kernel)
# Cold: the Debian kernel source built with KASAN/lockdep (minutes); warm: a second.
debug_guest=$(step guest-debug-kernel)
wordlist=$(step wordlist)
kubelet_client=$(step kubelet-client)
reference_plugin=$(step reference-plugin)
rootfs=$(step guest-rootfs)
checkpatch=$(step checkpatch)
step kmm-base-image >/dev/null
node_runtime=$(step node-runtime)
compose=$(step compose)

value() { printf '%s\n' "$2" | sed -n "s/^$1=//p" | tail -n 1; }

env_file="$MOCKACCEL_CACHE/env.sh"
tmp=$(mktemp "$env_file.XXXXXX")
cat >"$tmp" <<ENV
# Written by tools/provision/all.sh; source it before running the tests.
export MOCKACCEL_CACHE='$MOCKACCEL_CACHE'
export MOCKACCEL_KUBE_BIN='$(value KUBE_BIN "$kube")'
export MOCKACCEL_LIBVFIO_USER_PREFIX='$(value LIBVFIO_USER_PREFIX "$libvfio")'
export MOCKACCEL_QEMU='$(value QEMU "$qemu")'
export MOCKACCEL_GUEST_KERNEL='$(value GUEST_KERNEL "$guest")'
export MOCKACCEL_GUEST_KDIR='$(value GUEST_KDIR "$guest")'
export MOCKACCEL_GUEST_KVER='$(value GUEST_KVER "$guest")'
export MOCKACCEL_GUEST_DEBUG_KERNEL='$(value GUEST_DEBUG_KERNEL "$debug_guest")'
export MOCKACCEL_GUEST_DEBUG_KDIR='$(value GUEST_DEBUG_KDIR "$debug_guest")'
export MOCKACCEL_GUEST_DEBUG_KVER='$(value GUEST_DEBUG_KVER "$debug_guest")'
export MOCKACCEL_WORDLIST='$(value WORDLIST "$wordlist")'
export MOCKACCEL_KUBELET_CLIENT='$(value KUBELET_CLIENT "$kubelet_client")'
export MOCKACCEL_REFERENCE_PLUGIN='$(value REFERENCE_PLUGIN "$reference_plugin")'
export MOCKACCEL_GUEST_ROOTFS='$(value GUEST_ROOTFS "$rootfs")'
export MOCKACCEL_GUEST_9P_MODULES='$(value GUEST_9P_MODULES "$rootfs")'
export MOCKACCEL_CHECKPATCH='$(value CHECKPATCH "$checkpatch")'
export MOCKACCEL_CONTAINERD_BIN='$(value CONTAINERD_BIN "$node_runtime")'
export MOCKACCEL_RUNC='$(value RUNC "$node_runtime")'
export MOCKACCEL_CNI_BIN_DIR='$(value CNI_BIN_DIR "$node_runtime")'
export MOCKACCEL_PAUSE_IMAGE='$(value PAUSE_IMAGE "$node_runtime")'
export MOCKACCEL_PAUSE_IMAGE_ARCHIVE='$(value PAUSE_IMAGE_ARCHIVE "$node_runtime")'
export MOCKACCEL_BUSYBOX_IMAGE='$(value BUSYBOX_IMAGE "$node_runtime")'
export MOCKACCEL_BUSYBOX_IMAGE_ARCHIVE='$(value BUSYBOX_IMAGE_ARCHIVE "$node_runtime")'
export MOCKACCEL_COMPOSE_PLUGIN='$(value COMPOSE_PLUGIN "$compose")'
ENV
mv "$tmp" "$env_file"
printf '%s\n' "$env_file"
