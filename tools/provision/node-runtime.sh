#!/usr/bin/env bash
# Provision what a real kubelet node needs besides kubelet itself (which
# tools/provision/kubernetes.sh builds): a CDI-capable containerd, runc, the CNI
# plugins, and two images built here because no registry is reachable: the pod
# sandbox ("pause") image and a busybox image for plain workloads.
#
# Why these choices (measured on the project's machines, see the spec's
# "A real kubelet node" sections):
# - containerd v2 from the Go module proxy rather than trixie's 1.7 package: both
#   run CDI pods here, but only 2.x reports its cgroup driver to kubelet over CRI,
#   so kubelet and the runtime cannot disagree about it. bookworm's 1.6 has no CDI.
# - runc and containernetworking-plugins from the machine's Debian suite (crun
#   fails on these hybrid cgroups).
# - images as OCI archives written by this script (a static pause binary built with
#   gcc, Debian's busybox-static), each a single layer FROM scratch: no podman, no
#   registry; the test-bed imports them into containerd's k8s.io namespace.
#
# Everything is cached by version under $MOCKACCEL_CACHE; a warm run only checks files.
# Output (stdout): KEY=VALUE lines only (CONTAINERD_BIN, RUNC, CNI_BIN_DIR,
# PAUSE_IMAGE, PAUSE_IMAGE_ARCHIVE, BUSYBOX_IMAGE, BUSYBOX_IMAGE_ARCHIVE).
set -euo pipefail

# shellcheck source=tools/lib/common.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../lib" && pwd)/common.sh"

[ -n "${CONTAINERD_VERSION:-}" ] || die "CONTAINERD_VERSION is empty in tools/versions.env"
[ -n "${PAUSE_IMAGE_TAG:-}" ] || die "PAUSE_IMAGE_TAG is empty in tools/versions.env"

ensure_apt runc containernetworking-plugins iptables iproute2 busybox-static gcc libc6-dev

# -- containerd ---------------------------------------------------------------------

CONTAINERD_DIR="$MOCKACCEL_CACHE/containerd/$CONTAINERD_VERSION"
CONTAINERD_CMDS=(containerd ctr containerd-shim-runc-v2)

build_containerd() {
	local c missing=0
	for c in "${CONTAINERD_CMDS[@]}"; do [ -x "$CONTAINERD_DIR/bin/$c" ] || missing=1; done
	[ $missing = 1 ] || return 0
	local started=$SECONDS mod=github.com/containerd/containerd/v2
	export GOMODCACHE="$MOCKACCEL_CACHE/go/mod" GOCACHE="$MOCKACCEL_CACHE/go/build"
	mkdir -p "$GOMODCACHE" "$GOCACHE"
	ensure_go
	local gomod
	gomod=$(cd "$GOMODCACHE" && GOFLAGS=-modcacherw go mod download -json "$mod@$CONTAINERD_VERSION" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
	[ -f "$gomod" ] || die "could not download the go.mod of $mod@$CONTAINERD_VERSION"
	ensure_go "$(awk '$1 == "go" {print $2; exit}' "$gomod")"
	log "building containerd $CONTAINERD_VERSION from the Go module proxy"
	local ldflags="-s -w -X $mod/version.Version=$CONTAINERD_VERSION -X $mod/version.Revision=module-proxy"
	local pkgs=()
	for c in "${CONTAINERD_CMDS[@]}"; do pkgs+=("$mod/cmd/$c@$CONTAINERD_VERSION"); done
	rm -rf "$CONTAINERD_DIR/bin.tmp"
	GOBIN="$CONTAINERD_DIR/bin.tmp" GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-modcacherw \
		go install -trimpath -tags 'no_btrfs no_devmapper no_zfs' -ldflags="$ldflags" "${pkgs[@]}" >&2
	rm -rf "$CONTAINERD_DIR/bin" && mv "$CONTAINERD_DIR/bin.tmp" "$CONTAINERD_DIR/bin"
	log "built containerd $CONTAINERD_VERSION in $((SECONDS - started)) s"
}

# -- images ---------------------------------------------------------------------------

# The sandbox process: sleeps until told to stop, reaps whatever is reparented to it.
PAUSE_C=$(cat <<'EOF'
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) { (void)sig; _exit(0); }

static void on_child(int sig)
{
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

int main(void)
{
	struct sigaction stop = { .sa_handler = on_stop };
	struct sigaction child = { .sa_handler = on_child, .sa_flags = SA_NOCLDSTOP };

	sigaction(SIGINT, &stop, NULL);
	sigaction(SIGTERM, &stop, NULL);
	sigaction(SIGCHLD, &child, NULL);
	for (;;)
		pause();
}
EOF
)

# sha256 of a file, hex only.
sha() { sha256sum "$1" | cut -d' ' -f1; }

# oci_archive ROOTFS NAME:TAG CONFIG_JSON OUT: a one-layer image FROM scratch as an OCI
# image-layout tar, named for `ctr images import` (io.containerd.image.name).
oci_archive() {
	local rootfs=$1 ref=$2 config=$3 out=$4
	local work
	work=$(mktemp -d)
	mkdir -p "$work/layout/blobs/sha256"
	# Reproducible layer: fixed order, times and owners.
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$rootfs" -cf "$work/layer.tar" .
	gzip -n -9 -c "$work/layer.tar" >"$work/layer.tar.gz"
	local diff_id layer_digest layer_size
	diff_id=$(sha "$work/layer.tar")
	layer_digest=$(sha "$work/layer.tar.gz")
	layer_size=$(stat -c %s "$work/layer.tar.gz")
	mv "$work/layer.tar.gz" "$work/layout/blobs/sha256/$layer_digest"
	printf '{"architecture":"amd64","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
		"$config" "$diff_id" >"$work/config.json"
	local config_digest config_size
	config_digest=$(sha "$work/config.json")
	config_size=$(stat -c %s "$work/config.json")
	mv "$work/config.json" "$work/layout/blobs/sha256/$config_digest"
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
		"$config_digest" "$config_size" "$layer_digest" "$layer_size" >"$work/manifest.json"
	local manifest_digest manifest_size
	manifest_digest=$(sha "$work/manifest.json")
	manifest_size=$(stat -c %s "$work/manifest.json")
	mv "$work/manifest.json" "$work/layout/blobs/sha256/$manifest_digest"
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
		"$manifest_digest" "$manifest_size" "$ref" "${ref##*:}" >"$work/layout/index.json"
	printf '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"
	mkdir -p "$(dirname "$out")"
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/layout" -cf "$out.tmp" .
	mv "$out.tmp" "$out"
	rm -rf "$work"
}

PAUSE_KEY=$(printf '%s' "$PAUSE_C" | sha256sum | cut -c1-12)
PAUSE_IMAGE="localhost/mock-accel-pause:$PAUSE_IMAGE_TAG"
PAUSE_ARCHIVE="$MOCKACCEL_CACHE/images/pause-$PAUSE_IMAGE_TAG-$PAUSE_KEY.oci.tar"

build_pause() {
	[ -f "$PAUSE_ARCHIVE" ] && return 0
	log "building $PAUSE_IMAGE (static pause binary)"
	local work
	work=$(mktemp -d)
	mkdir -p "$work/rootfs"
	printf '%s\n' "$PAUSE_C" >"$work/pause.c"
	gcc -static -Os -Wall -Werror -o "$work/rootfs/pause" "$work/pause.c"
	strip "$work/rootfs/pause"
	oci_archive "$work/rootfs" "$PAUSE_IMAGE" \
		'{"Entrypoint":["/pause"],"StopSignal":"SIGTERM","User":"65535:65535"}' "$PAUSE_ARCHIVE"
	rm -rf "$work"
}

# busybox from the machine's busybox-static package; its version names the image.
BUSYBOX_VERSION=$(dpkg-query -W -f='${Version}' busybox-static)
BUSYBOX_VERSION=$(printf '%s' "${BUSYBOX_VERSION#*:}" | tr -c 'A-Za-z0-9_.-' '_')
BUSYBOX_IMAGE="localhost/mock-accel-busybox:$BUSYBOX_VERSION"
BUSYBOX_ARCHIVE="$MOCKACCEL_CACHE/images/busybox-$BUSYBOX_VERSION.oci.tar"

build_busybox() {
	[ -f "$BUSYBOX_ARCHIVE" ] && return 0
	log "building $BUSYBOX_IMAGE"
	local work applet
	work=$(mktemp -d)
	mkdir -p "$work/rootfs/bin" "$work/rootfs/tmp" "$work/rootfs/etc"
	chmod 1777 "$work/rootfs/tmp"
	cp /bin/busybox "$work/rootfs/bin/busybox"
	for applet in $(/bin/busybox --list); do
		[ "$applet" = busybox ] || ln -s busybox "$work/rootfs/bin/$applet"
	done
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$work/rootfs/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$work/rootfs/etc/group"
	oci_archive "$work/rootfs" "$BUSYBOX_IMAGE" \
		'{"Cmd":["/bin/sh"],"Env":["PATH=/bin"]}' "$BUSYBOX_ARCHIVE"
	rm -rf "$work"
}

step() {
	local started=$SECONDS
	"$@"
	log "$1: $((SECONDS - started)) s"
}

step build_containerd
step build_pause
step build_busybox

for c in "${CONTAINERD_CMDS[@]}"; do [ -x "$CONTAINERD_DIR/bin/$c" ] || die "$c missing in $CONTAINERD_DIR/bin"; done
[ -d /usr/lib/cni ] && [ -x /usr/lib/cni/bridge ] || die "CNI plugins missing in /usr/lib/cni"

printf 'CONTAINERD_BIN=%s\n' "$CONTAINERD_DIR/bin"
printf 'RUNC=%s\n' "$(command -v runc)"
printf 'CNI_BIN_DIR=%s\n' /usr/lib/cni
printf 'PAUSE_IMAGE=%s\n' "$PAUSE_IMAGE"
printf 'PAUSE_IMAGE_ARCHIVE=%s\n' "$PAUSE_ARCHIVE"
printf 'BUSYBOX_IMAGE=%s\n' "$BUSYBOX_IMAGE"
printf 'BUSYBOX_IMAGE_ARCHIVE=%s\n' "$BUSYBOX_ARCHIVE"
