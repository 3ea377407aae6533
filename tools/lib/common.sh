# shellcheck shell=bash
# Shared helpers for the provisioning scripts. Source it; it defines functions only.
#
# Every provisioned artefact lives under one cache root, in a folder named after
# the component and its version, so a version bump means a new folder and an
# old folder is never half-reused.

MOCKACCEL_REPO_ROOT="${MOCKACCEL_REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
MOCKACCEL_CACHE="${MOCKACCEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mock-accel}"
export MOCKACCEL_REPO_ROOT MOCKACCEL_CACHE

# shellcheck source=tools/versions.env
. "$MOCKACCEL_REPO_ROOT/tools/versions.env"

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The Debian mirror the machine's own apt sources use (never hard-coded here).
debian_mirror() {
	local uri
	uri=$(grep -hE '^\s*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null |
		awk '{print $2}' | grep -v -- '-security' | head -n 1)
	if [ -z "$uri" ]; then
		uri=$(grep -hE '^\s*deb\s' /etc/apt/sources.list 2>/dev/null |
			awk '{print $2}' | grep -v -- '-security' | head -n 1)
	fi
	[ -n "$uri" ] || die "no Debian mirror found in the machine's apt sources"
	printf '%s\n' "${uri%/}"
}

# Run apt-get against another suite through a private option set, leaving the
# machine's own sources untouched. Usage: suite_apt SUITE [deb-src] -- apt-get args...
suite_apt() {
	local suite=$1; shift
	local with_src=0
	if [ "${1:-}" = deb-src ]; then with_src=1; shift; fi
	[ "${1:-}" = -- ] && shift
	local dir="$MOCKACCEL_CACHE/apt/$suite"
	if [ $with_src = 1 ]; then dir="$dir-src"; fi
	mkdir -p "$dir/lists/partial"
	local mirror
	mirror=$(debian_mirror)
	{
		echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main"
		if [ $with_src = 1 ]; then echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main"; fi
	} >"$dir/sources.list"
	local opts=(-o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State::Lists=$dir/lists" -o APT::Get::List-Cleanup=0)
	local stamp="$dir/.updated"
	if [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +720 2>/dev/null)" ]; then
		apt-get "${opts[@]}" update -qq >&2 && touch "$stamp"
	fi
	apt-get "${opts[@]}" "$@"
}

# Warm path of a component resolved per suite (tools/provision/{libvfio-user,qemu,
# guest-kernel}.sh): the version folder remembered in COMPONENT_DIR/resolved-SUITE,
# if its build completed. Prints the folder; fails when there is none (or with --refresh).
# Usage: dir=$(remembered_build COMPONENT_DIR SUITE [ARGS...]) && { report "$dir"; exit 0; }
remembered_build() {
	local component_dir=$1 suite=$2 ver
	shift 2
	[ "${1:-}" = --refresh ] && return 1
	[ -f "$component_dir/resolved-$suite" ] || return 1
	ver=$(cat "$component_dir/resolved-$suite")
	[ -f "$component_dir/$ver/.complete" ] || return 1
	printf '%s\n' "$component_dir/$ver"
}

# Install Debian packages of the machine's own suite if any is missing.
ensure_apt() {
	local missing=()
	local p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "apt-get install ${missing[*]}"
	if [ ! -f "$MOCKACCEL_CACHE/.apt-updated" ] || [ -n "$(find "$MOCKACCEL_CACHE/.apt-updated" -mmin +720)" ]; then
		mkdir -p "$MOCKACCEL_CACHE"
		apt-get update -qq >&2 && touch "$MOCKACCEL_CACHE/.apt-updated"
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# True when version $1 >= version $2 (dotted numbers, e.g. 1.25.0).
version_ge() { printf '%s\n%s\n' "$2" "$1" | sort -V -C; }

# ensure_go [VERSION]: put a Go toolchain of at least VERSION (e.g. 1.25.0; default:
# any go that can switch toolchains, >= 1.21) first on PATH, installing one if needed.
#
# Why: a fresh Debian machine has no go, and bookworm's own golang-go (1.19) is too
# old for Kubernetes. The machine's go is used when new enough. Otherwise Debian's
# golang-$GO_BOOTSTRAP_MAJOR-go from $GO_BOOTSTRAP_SUITE is unpacked into the cache
# (dpkg -x: nothing is installed system-wide, so a machine's own go is never shadowed)
# and serves as the bootstrap that fetches goVERSION through the Go module proxy's
# toolchain route (GOTOOLCHAIN=goVERSION), go's own client for that registry. Both
# land in the cache, so a second call only runs `go env`.
ensure_go() {
	local want=${1:-1.21.0} have="" boot=""
	export GOMODCACHE="${GOMODCACHE:-$MOCKACCEL_CACHE/go/mod}"
	if command -v go >/dev/null 2>&1; then
		have=$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null || true)
		have=${have#go}; have=${have%% *}
		if [ -n "$have" ] && version_ge "$have" "$want"; then return 0; fi
		if [ -n "$have" ] && version_ge "$have" 1.21.0; then boot=$(command -v go); fi
	fi
	if [ -z "$boot" ]; then
		local dir="$MOCKACCEL_CACHE/go-bootstrap/golang-$GO_BOOTSTRAP_MAJOR-$GO_BOOTSTRAP_SUITE"
		boot="$dir/usr/lib/go-$GO_BOOTSTRAP_MAJOR/bin/go"
		if [ ! -x "$boot" ]; then
			log "no go >= $want: unpacking golang-$GO_BOOTSTRAP_MAJOR-go from Debian $GO_BOOTSTRAP_SUITE"
			local tmp
			tmp=$(mktemp -d) && chmod 755 "$tmp" # apt's _apt user downloads into it
			(cd "$tmp" && suite_apt "$GO_BOOTSTRAP_SUITE" -- download -qq \
				"golang-$GO_BOOTSTRAP_MAJOR-go" "golang-$GO_BOOTSTRAP_MAJOR-src" >&2)
			rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
			local deb
			for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$dir.tmp"; done
			rm -rf "$tmp" "$dir" && mv "$dir.tmp" "$dir"
		fi
		have=$(GOTOOLCHAIN=local "$boot" env GOVERSION); have=${have#go}; have=${have%% *}
		if version_ge "$have" "$want"; then
			PATH="$(dirname "$boot"):$PATH"; export PATH
			return 0
		fi
	fi
	local goarch toolchain
	goarch=$(GOTOOLCHAIN=local "$boot" env GOARCH)
	toolchain="$GOMODCACHE/golang.org/toolchain@v0.0.1-go$want.linux-$goarch"
	if [ ! -x "$toolchain/bin/go" ]; then
		log "fetching the go$want toolchain through the Go module proxy (bootstrap: go$have)"
		mkdir -p "$GOMODCACHE"
		GOTOOLCHAIN="go$want" GOFLAGS=-modcacherw "$boot" version >&2
	fi
	[ -x "$toolchain/bin/go" ] || die "go$want toolchain not found at $toolchain after download"
	PATH="$toolchain/bin:$PATH"; export PATH
}
