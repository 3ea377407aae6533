#!/usr/bin/env bash
# Provision the kernel's checkpatch.pl (with spelling.txt and
# const_structs.checkpatch, which it reads from its own folder).
#
# Why: the kernel module must be checkpatch-clean (style habit 20), and
# checkpatch.pl is only shipped inside the kernel source. Debian's
# linux-source-<series> package (the series of the guest kernel, from
# GUEST_KERNEL_SUITE) carries the source tarball; the three files are taken
# out of it once and the 140 MB package is not kept. Never committed.
#
# The package version is resolved at the first run and remembered in the
# cache, so warm runs stay offline; `--refresh` resolves again.
#
# Output (stdout): CHECKPATCH=<path to checkpatch.pl> as the last line.
set -euo pipefail

# shellcheck source=tools/lib/common.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../lib" && pwd)/common.sh"

COMPONENT_DIR="$MOCKACCEL_CACHE/checkpatch"
RESOLVED="$COMPONENT_DIR/resolved-$GUEST_KERNEL_SUITE"
FILES=(checkpatch.pl spelling.txt const_structs.checkpatch)

report() { printf 'CHECKPATCH=%s\n' "$1/checkpatch.pl"; }

if dir=$(remembered_build "$COMPONENT_DIR" "$GUEST_KERNEL_SUITE" "$@"); then
	report "$dir"
	exit 0
fi

command -v perl >/dev/null 2>&1 || ensure_apt perl
command -v xz >/dev/null 2>&1 || ensure_apt xz-utils

kver=$("$MOCKACCEL_REPO_ROOT/tools/provision/guest-kernel.sh" | sed -n 's/^GUEST_KVER=//p')
series=$(printf '%s\n' "$kver" | cut -d. -f1,2)
[ -n "$series" ] || die "cannot tell the guest kernel series (tools/provision/guest-kernel.sh)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log "downloading linux-source-$series from $GUEST_KERNEL_SUITE (about 140 MB, once)"
(cd "$tmp" && suite_apt "$GUEST_KERNEL_SUITE" -- -o APT::Sandbox::User=root download -qq \
	"linux-source-$series" >&2) || die "downloading linux-source-$series failed"
deb=$(find "$tmp" -name "linux-source-${series}_*.deb" | head -n 1)
ver=$(dpkg-deb -f "$deb" Version)
DIR="$COMPONENT_DIR/$ver"
if [ ! -f "$DIR/.complete" ]; then
	rm -rf "$DIR"
	mkdir -p "$DIR"
	members=()
	for f in "${FILES[@]}"; do members+=("linux-source-$series/scripts/$f"); done
	dpkg-deb --fsys-tarfile "$deb" |
		tar -xO "./usr/src/linux-source-$series.tar.xz" |
		xz -dc | tar -x -C "$tmp" "${members[@]}"
	for f in "${FILES[@]}"; do
		install -m "$([ "$f" = checkpatch.pl ] && echo 0755 || echo 0644)" \
			"$tmp/linux-source-$series/scripts/$f" "$DIR/$f"
	done
	printf 'package=linux-source-%s\nversion=%s\nsuite=%s\n' "$series" "$ver" "$GUEST_KERNEL_SUITE" \
		>"$DIR/PROVENANCE"
	touch "$DIR/.complete"
fi
printf '%s\n' "$ver" >"$RESOLVED"
report "$DIR"
