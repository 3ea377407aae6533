#!/usr/bin/env bash
# Provision the Kubernetes test-bed binaries: kube-apiserver, kube-scheduler,
# kube-controller-manager and kubectl built from Go modules, helm built from its
# Go module, and etcd from Debian's etcd-server package.
#
# Why: no container images can be pulled (no kind, no k3s), but the Go module
# proxy and the Debian archive are reachable, so the control plane is built from
# source. Everything lands in a per-version cache folder and a stamp file marks
# completion, so a second run is a no-op that returns at once.
#
# Versions come from tools/versions.env (K8S_VERSION, HELM_VERSION, ETCD_VERSION).
# Output (stdout): KUBE_BIN=<bin dir>; point MOCKACCEL_KUBE_BIN at it.
set -euo pipefail

# shellcheck source=tools/lib/common.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../lib" && pwd)/common.sh"

[ -n "${K8S_VERSION:-}" ] || die "K8S_VERSION is empty in tools/versions.env"
[ -n "${HELM_VERSION:-}" ] || die "HELM_VERSION is empty in tools/versions.env"
[ -n "${ETCD_VERSION:-}" ] || die "ETCD_VERSION is empty in tools/versions.env"

K8S_DIR="$MOCKACCEL_CACHE/kubernetes/$K8S_VERSION"
BIN_DIR="$K8S_DIR/bin"
STAMP="$K8S_DIR/.complete-helm-$HELM_VERSION-etcd-$ETCD_VERSION"
BINARIES=(kube-apiserver kube-scheduler kube-controller-manager kubelet kubectl etcd helm)

all_present() {
	local b
	for b in "${BINARIES[@]}"; do [ -x "$BIN_DIR/$b" ] || return 1; done
}

if [ -f "$STAMP" ] && all_present; then
	printf 'KUBE_BIN=%s\n' "$BIN_DIR"
	exit 0
fi

# Go toolchain: any go that can read go.mod first (installed by ensure_go when missing),
# then the version k8s.io/kubernetes's go.mod asks for (below). Module and build caches
# are shared under the cache root so rebuilds and version bumps are warm.
export GOMODCACHE="$MOCKACCEL_CACHE/go/mod" GOCACHE="$MOCKACCEL_CACHE/go/build"
ensure_go
# -modcacherw: a plain rm -rf can clean the cache root. GOTOOLCHAIN=local: ensure_go
# alone picks the toolchain, so no build switches versions behind our back.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=mod -modcacherw"
mkdir -p "$BIN_DIR" "$GOMODCACHE" "$GOCACHE"

build_kubernetes() {
	local cmds=(kube-apiserver kube-scheduler kube-controller-manager kubelet kubectl)
	local c need_build=0
	for c in "${cmds[@]}"; do [ -x "$BIN_DIR/$c" ] || need_build=1; done
	[ $need_build = 1 ] || return 0

	local v=${K8S_VERSION#v} staging=v0.${K8S_VERSION#v1.}
	local src="$K8S_DIR/src"
	mkdir -p "$src"
	log "building Kubernetes $K8S_VERSION (staging modules $staging); this takes many minutes on a cold cache"

	# k8s.io/kubernetes pins its staging modules as ./staging/... replaces, which
	# do not apply to a consumer; map each of them to its published v0.Y.Z.
	local kmod
	kmod=$(cd "$src" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
	[ -f "$kmod" ] || die "could not download the go.mod of k8s.io/kubernetes@$K8S_VERSION"
	local goversion
	goversion=$(awk '$1 == "go" {print $2; exit}' "$kmod")
	ensure_go "$goversion"
	{
		echo "module mockaccel.invalid/kubernetes-build"
		echo
		echo "go $goversion"
		echo
		echo "require k8s.io/kubernetes $K8S_VERSION"
		echo
		echo "replace ("
		awk -v ver="$staging" '$2 == "=>" && $3 ~ /^\.\/staging\// {printf "\t%s => %s %s\n", $1, $1, ver}' "$kmod"
		echo ")"
	} >"$src/go.mod"
	rm -f "$src/go.sum"

	local pkg=k8s.io/component-base/version
	local minor=${v#*.}
	minor=${minor%%.*}
	local ldflags="-s -w -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
	ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
	ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
	ldflags+=" -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"

	local pkgs=()
	for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
	# Pin the version: a bare `go get pkg` would upgrade k8s.io/kubernetes to the newest.
	(cd "$src" && go get "${pkgs[@]/%/@$K8S_VERSION}" >&2)
	(cd "$src" && go build -trimpath -ldflags="$ldflags" -o "$BIN_DIR/" "${pkgs[@]}")
}

build_helm() {
	local dir="$MOCKACCEL_CACHE/helm/$HELM_VERSION"
	if [ ! -x "$dir/bin/helm" ]; then
		log "building helm $HELM_VERSION"
		local hmod
		hmod=$(cd "$GOMODCACHE" && go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
		ensure_go "$(awk '$1 == "go" {print $2; exit}' "$hmod")"
		local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
		ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
		GOBIN="$dir/bin" GOFLAGS=-modcacherw go install -trimpath -ldflags="$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
	fi
	ln -sfn "$dir/bin/helm" "$BIN_DIR/helm"
}

install_etcd() {
	# Debian's etcd-server is a static Go binary: unpack the deb, no dpkg install.
	local dir="$MOCKACCEL_CACHE/etcd/$ETCD_VERSION"
	if [ ! -x "$dir/usr/bin/etcd" ]; then
		log "fetching etcd-server $ETCD_VERSION from Debian ${ETCD_SUITE:-trixie}"
		local tmp
		tmp=$(mktemp -d)
		(cd "$tmp" && suite_apt "${ETCD_SUITE:-trixie}" -- download -qq "etcd-server=$ETCD_VERSION" >&2)
		mkdir -p "$dir"
		dpkg -x "$tmp"/etcd-server_*.deb "$dir"
		rm -rf "$tmp"
	fi
	[ -x "$dir/usr/bin/etcd" ] || die "etcd not found in etcd-server $ETCD_VERSION"
	ln -sfn "$dir/usr/bin/etcd" "$BIN_DIR/etcd"
}

start=$(date +%s)
install_etcd
build_helm
build_kubernetes
all_present || die "some binaries are missing in $BIN_DIR"
"$BIN_DIR/kube-apiserver" --version >&2
touch "$STAMP"
log "done in $(($(date +%s) - start))s"
printf 'KUBE_BIN=%s\n' "$BIN_DIR"
