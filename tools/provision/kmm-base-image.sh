#!/usr/bin/env bash
# Provision podman and the local base image the KMM module image is built from.
#
# Why: KMM ships kernel modules as container images, and this machine has no
# container registry. podman (with runc: crun fails on these hybrid-cgroup
# VMs) builds them from a base image bootstrapped here with mmdebstrap and
# imported as localhost/mock-accel-base:<suite>. The image holds kmod
# (depmod, modprobe for KMM's worker) and the kbuild toolchain the builder
# stage needs (make, gcc-12 -- the gcc the Debian kernel was built with --
# libc6-dev, and libelf1 for objtool). /etc/containers/containers.conf gets
# the settings podman needs on these machines (docs:
# ../shared/spec/environment.md, "Containers").
#
# Output (stdout): KMM_BASE_IMAGE=<name:tag> as the last line.
set -euo pipefail

# shellcheck source=tools/lib/common.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../lib" && pwd)/common.sh"

SUITE=${KMM_BASE_SUITE:-bookworm}
IMAGE=localhost/mock-accel-base:$SUITE
PACKAGES=kmod,make,gcc-12,libc6-dev,libelf1
CONF=/etc/containers/containers.conf

ensure_apt podman runc mmdebstrap

# Idempotent: written only when missing or different.
want=$(cat <<'EOF'
# Written by tools/provision/kmm-base-image.sh: root lacks CAP_SYS_RESOURCE and
# the VMs run hybrid cgroups without systemd.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
)
if [ "$(cat "$CONF" 2>/dev/null)" != "$want" ]; then
	mkdir -p "$(dirname "$CONF")"
	printf '%s\n' "$want" >"$CONF"
fi

label="mock-accel.packages=$PACKAGES"
if podman image exists "$IMAGE" &&
	[ "$(podman image inspect --format '{{index .Labels "mock-accel.packages"}}' "$IMAGE")" = "$PACKAGES" ]; then
	printf 'KMM_BASE_IMAGE=%s\n' "$IMAGE"
	exit 0
fi

log "mmdebstrap --variant=apt $SUITE ($PACKAGES) | podman import $IMAGE"
mmdebstrap --quiet --variant=apt --include="$PACKAGES" \
	--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	"$SUITE" - "$(debian_mirror)" |
	podman import --change "LABEL $label" \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		- "$IMAGE" >&2
printf 'KMM_BASE_IMAGE=%s\n' "$IMAGE"
