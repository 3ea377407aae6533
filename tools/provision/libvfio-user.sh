#!/usr/bin/env bash
# Provision libvfio-user: the shared library, its headers and the C sample
# server and client, built from the copy Debian's qemu source package carries.
#
# Why: libvfio-user is not packaged in Debian and GitHub is unreachable, but the
# qemu source package ships it in subprojects/libvfio-user/ at the commit QEMU
# pins. The qemu source version is resolved from LIBVFIO_USER_SUITE at the first
# run (patch versions leave the archive), then remembered in the cache so warm
# runs stay offline; `--refresh` resolves again.
#
# The samples (server, client, lspci, null, gpio-pci-idio-16) are built by meson
# but not installed; they are copied into PREFIX/bin, where their $ORIGIN/../lib
# run path finds the installed library. Tests use `server` as a reference peer
# and `client` as a benchmark baseline.
#
# Output (stdout): LIBVFIO_USER_COMMIT=, LIBVFIO_USER_SRC=, then
# LIBVFIO_USER_PREFIX= as the last line (point MOCKACCEL_LIBVFIO_USER_PREFIX at it).
set -euo pipefail

# shellcheck source=tools/lib/common.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../lib" && pwd)/common.sh"

[ -n "${LIBVFIO_USER_SUITE:-}" ] || die "LIBVFIO_USER_SUITE is empty in tools/versions.env"

COMPONENT_DIR="$MOCKACCEL_CACHE/libvfio-user"
RESOLVED="$COMPONENT_DIR/resolved-$LIBVFIO_USER_SUITE"
SAMPLES=(server client lspci null gpio-pci-idio-16)

report() {
	local dir=$1
	printf 'LIBVFIO_USER_COMMIT=%s\n' "$(cat "$dir/COMMIT")"
	printf 'LIBVFIO_USER_SRC=%s\n' "$dir/src"
	printf 'LIBVFIO_USER_PREFIX=%s\n' "$dir/prefix"
}

# Warm path: a remembered resolution whose build completed.
if dir=$(remembered_build "$COMPONENT_DIR" "$LIBVFIO_USER_SUITE" "$@"); then
	report "$dir"
	exit 0
fi

ensure_apt meson ninja-build pkg-config libjson-c-dev libcmocka-dev gcc libc6-dev xz-utils

# Always refresh the index with deb-src here: suite_apt's update stamp does not
# know whether an earlier caller asked for deb-src lines.
suite_apt "$LIBVFIO_USER_SUITE" deb-src -- update -qq 2>/dev/null ||
	die "apt update for $LIBVFIO_USER_SUITE (deb-src) failed"
ver=$(suite_apt "$LIBVFIO_USER_SUITE" deb-src -- source --print-uris -qq qemu 2>/dev/null |
	awk '$2 ~ /\.dsc$/ {print $2}' | sed -E 's/^qemu_(.*)\.dsc$/\1/' | head -n 1)
[ -n "$ver" ] || die "no qemu source package in $LIBVFIO_USER_SUITE"
log "qemu source in $LIBVFIO_USER_SUITE: $ver"

DIR="$COMPONENT_DIR/$ver"
if [ -f "$DIR/.complete" ]; then
	printf '%s\n' "$ver" >"$RESOLVED"
	report "$DIR"
	exit 0
fi

rm -rf "$DIR"
mkdir -p "$DIR/download"
(cd "$DIR/download" &&
	suite_apt "$LIBVFIO_USER_SUITE" deb-src -- -o APT::Sandbox::User=root \
		source --download-only -qq qemu >&2) ||
	die "downloading qemu $ver source failed (the mirror may lack it: try another LIBVFIO_USER_SUITE)"

orig=$(find "$DIR/download" -maxdepth 1 -name 'qemu_*.orig.tar.*' | head -n 1)
[ -n "$orig" ] || die "no orig tarball in $DIR/download"
log "extracting subprojects/libvfio-user from $(basename "$orig")"
tar -xf "$orig" -C "$DIR/download" --wildcards '*/subprojects/libvfio-user*'
sub=$(find "$DIR/download" -mindepth 2 -maxdepth 2 -type d -name subprojects | head -n 1)
[ -d "$sub/libvfio-user" ] || die "$(basename "$orig") has no subprojects/libvfio-user"
commit=$(awk -F' *= *' '$1 == "revision" {print $2}' "$sub/libvfio-user.wrap")
[ -n "$commit" ] || die "no revision in libvfio-user.wrap"
mv "$sub/libvfio-user" "$DIR/src"
cp "$sub/libvfio-user.wrap" "$DIR/src/libvfio-user.wrap"
rm -rf "$DIR/download"

# --libdir=lib so the samples' build run path ($ORIGIN/../lib) also resolves
# from PREFIX/bin. A release build, because the debug default adds -Werror.
log "building libvfio-user $commit"
meson setup "$DIR/build" "$DIR/src" --prefix="$DIR/prefix" --libdir=lib \
	--buildtype=release >&2
ninja -C "$DIR/build" >&2
ninja -C "$DIR/build" install >&2
mkdir -p "$DIR/prefix/bin"
for s in "${SAMPLES[@]}"; do
	install -m 0755 "$DIR/build/samples/$s" "$DIR/prefix/bin/$s"
done
"$DIR/prefix/bin/server" -h >/dev/null 2>&1 || [ $? -le 1 ] ||
	die "the installed sample server does not start"
rm -rf "$DIR/build"

printf '%s\n' "$commit" >"$DIR/COMMIT"
cat >"$DIR/BUILDINFO" <<EOF
suite=$LIBVFIO_USER_SUITE
qemu_source_version=$ver
libvfio_user_commit=$commit
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF
touch "$DIR/.complete"
printf '%s\n' "$ver" >"$RESOLVED"
report "$DIR"
