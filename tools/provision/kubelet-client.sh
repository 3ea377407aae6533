#!/usr/bin/env bash
# Build the Go kubelet test client (tools/go/kubelet-client): it plays kubelet
# against the node agent over its Unix sockets with the official k8s.io/kubelet
# stubs and validates CDI specs with the official CDI library.
#
# Cached by version: the key is K8S_VERSION plus a hash of the client's
# sources (*.go, go.mod, go.sum), so an edit rebuilds and a warm run is a
# no-op. Modules come from the Go module proxy into the shared GOMODCACHE.
# The last line on stdout is the binary; point MOCKACCEL_KUBELET_CLIENT at it.
set -euo pipefail

# shellcheck source=tools/lib/common.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../lib" && pwd)/common.sh"

[ -n "${K8S_VERSION:-}" ] || die "K8S_VERSION is empty in tools/versions.env"
SRC="$MOCKACCEL_REPO_ROOT/tools/go/kubelet-client"
staging="v0.${K8S_VERSION#v1.}"
grep -q "k8s.io/kubelet $staging\$" "$SRC/go.mod" ||
	die "tools/go/kubelet-client/go.mod must require k8s.io/kubelet $staging (K8S_VERSION=$K8S_VERSION)"

key=$(cat "$SRC"/*.go "$SRC/go.mod" "$SRC/go.sum" | sha256sum | cut -c1-12)
DIR="$MOCKACCEL_CACHE/kubelet-client/$K8S_VERSION-$key"
BIN="$DIR/kubelet-client"

if [ ! -x "$BIN" ]; then
	export GOMODCACHE="$MOCKACCEL_CACHE/go/mod" GOCACHE="$MOCKACCEL_CACHE/go/build"
	ensure_go "$(awk '$1 == "go" {print $2; exit}' "$SRC/go.mod")"
	export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -modcacherw"
	mkdir -p "$DIR" "$GOMODCACHE" "$GOCACHE"
	log "building the kubelet test client (k8s.io/kubelet $staging)"
	(cd "$SRC" && go build -trimpath -o "$BIN.tmp" .)
	mv "$BIN.tmp" "$BIN"
fi
printf 'KUBELET_CLIENT=%s\n' "$BIN"
