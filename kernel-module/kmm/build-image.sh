#!/usr/bin/env bash
# Build the prebuilt KMM module image for one kernel with podman (no registry).
#
#   kernel-module/kmm/build-image.sh KDIR KERNEL_VERSION WORDLIST TAG
#
# KDIR is the kernel's kbuild tree (tools/provision/guest-kernel.sh prints
# GUEST_KDIR); it is bind-mounted at the same path, because the provisioned
# tree refers to itself by absolute paths. The base image comes from
# tools/provision/kmm-base-image.sh. Prints IMAGE=<tag> as the last line.
set -euo pipefail

[ $# -eq 4 ] || { echo "usage: $0 KDIR KERNEL_VERSION WORDLIST TAG" >&2; exit 2; }
kdir=$1 kver=$2 wordlist=$3 tag=$4
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
base=${BASE_IMAGE:-localhost/mock-accel-base:bookworm}
podman image exists "$base" || { echo "no $base: run tools/provision/kmm-base-image.sh" >&2; exit 1; }

# The provisioned tree points into its own cache root (…/guest-kernel/<ver>/root).
mount_root=$(cd "$kdir/../../.." && pwd)
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$src"/Kbuild "$src"/Makefile "$src"/mockaccel_regs.h "$src"/mock-accel.h "$src"/mock-accel-*.c "$ctx/"
cp "$wordlist" "$ctx/mock-accel-wordlist.txt"
podman build --pull=never -q -f "$src/Containerfile" --build-arg "BASE_IMAGE=$base" \
	--build-arg "KERNEL_VERSION=$kver" --build-arg "KDIR=$kdir" \
	-v "$mount_root:$mount_root:ro" -t "$tag" "$ctx" >&2
printf 'IMAGE=%s\n' "$tag"
