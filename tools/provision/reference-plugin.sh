#!/usr/bin/env bash
# Build the reference kubelet DRA plugin (tools/go/reference-plugin): the
# measuring stick the node agent is benchmarked against
# (tools/bench/prepare_side_by_side), built on the official kubeletplugin
# helper from k8s.io/dynamic-resource-allocation at the test-bed's Kubernetes
# version. Building it in every provisioning run keeps it from rotting.
#
# Cached by version: the key is K8S_VERSION plus a hash of the plugin's
# sources (*.go, go.mod, go.sum), so an edit rebuilds and a warm run is a
# no-op. Modules come from the Go module proxy into the shared GOMODCACHE.
# The last line on stdout is the binary; point MOCKACCEL_REFERENCE_PLUGIN at it.
set -euo pipefail

# shellcheck source=tools/lib/common.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../lib" && pwd)/common.sh"

if [ "${1:-}" = --help ] || [ "${1:-}" = -h ]; then
	sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
	exit 0
fi

[ -n "${K8S_VERSION:-}" ] || die "K8S_VERSION is empty in tools/versions.env"
SRC="$MOCKACCEL_REPO_ROOT/tools/go/reference-plugin"
staging="v0.${K8S_VERSION#v1.}"
grep -q "k8s.io/dynamic-resource-allocation $staging\$" "$SRC/go.mod" ||
	die "tools/go/reference-plugin/go.mod must require k8s.io/dynamic-resource-allocation $staging (K8S_VERSION=$K8S_VERSION)"

key=$(cat "$SRC"/*.go "$SRC/go.mod" "$SRC/go.sum" | sha256sum | cut -c1-12)
DIR="$MOCKACCEL_CACHE/reference-plugin/$K8S_VERSION-$key"
BIN="$DIR/reference-plugin"

if [ ! -x "$BIN" ]; then
	export GOMODCACHE="$MOCKACCEL_CACHE/go/mod" GOCACHE="$MOCKACCEL_CACHE/go/build"
	ensure_go "$(awk '$1 == "go" {print $2; exit}' "$SRC/go.mod")"
	export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -modcacherw"
	mkdir -p "$DIR" "$GOMODCACHE" "$GOCACHE"
	log "building the reference DRA plugin (k8s.io/dynamic-resource-allocation $staging)"
	(cd "$SRC" && go build -trimpath -o "$BIN.tmp" .)
	mv "$BIN.tmp" "$BIN"
fi
printf 'REFERENCE_PLUGIN=%s\n' "$BIN"
