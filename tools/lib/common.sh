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
