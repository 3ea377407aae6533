#!/usr/bin/env bash
# Provision podman and the local base image the KMM module image is built from.
#
# Why: KMM ships kernel modules as container images, and this machine has no
# container registry. podman (with runc: crun fails on these hybrid-cgroup
# VMs) builds them from a base image bootstrapped here with mmdebstrap and
# imported as localhost/mock-accel-base:<suite>. The image holds kmod
# (depmod, modprobe for KMM's worker) and the kbuild toolchain the builder
# stage needs (make, gcc-12 -- the gcc the Debian kernel was built with --
# libc6-dev, and libelf1 for objtool). The podman setup and the bootstrap are
# shared with tools/images (tools/lib/podman.sh).
#
# Output (stdout): KMM_BASE_IMAGE=<name:tag> as the last line.
set -euo pipefail

# shellcheck source=tools/lib/common.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../lib" && pwd)/common.sh"
# shellcheck source=tools/lib/podman.sh
. "$MOCKACCEL_REPO_ROOT/tools/lib/podman.sh"

SUITE=${KMM_BASE_SUITE:-bookworm}
IMAGE=localhost/mock-accel-base:$SUITE
PACKAGES=kmod,make,gcc-12,libc6-dev,libelf1

ensure_podman
debian_base_image "$IMAGE" "$SUITE" "$PACKAGES"
printf 'KMM_BASE_IMAGE=%s\n' "$IMAGE"
