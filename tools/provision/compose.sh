#!/usr/bin/env bash
# Provision Docker Compose v2 as the docker CLI plugin (`docker compose`), built
# from its Go module, for deploy/compose (docs/local-emulation.md).
#
# Why: Debian's docker-compose is the 1.29 line, which has no `up --wait`, and no
# release binary can be fetched here: the plugin is built from the module
# github.com/docker/compose/v2 (its cmd package), as released.
# The docker CLI itself must already be on PATH (it talks to podman's Docker API).
#
# Cached by version under $MOCKACCEL_CACHE/compose/<version>; a warm run checks one
# file. The plugin is linked into ~/.docker/cli-plugins (the CLI's per-user plugin
# dir) so `docker compose` works in any shell.
# Output (stdout): KEY=VALUE lines only (COMPOSE_PLUGIN=<path of docker-compose>).
set -euo pipefail

case "${1:-}" in -h | --help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;; esac

# shellcheck source=tools/lib/common.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../lib" && pwd)/common.sh"

[ -n "${COMPOSE_VERSION:-}" ] || die "COMPOSE_VERSION is empty in tools/versions.env"

DIR="$MOCKACCEL_CACHE/compose/$COMPOSE_VERSION"
PLUGIN="$DIR/bin/docker-compose"
MOD=github.com/docker/compose/v2

if [ ! -x "$PLUGIN" ]; then
	started=$SECONDS
	export GOMODCACHE="$MOCKACCEL_CACHE/go/mod" GOCACHE="$MOCKACCEL_CACHE/go/build"
	mkdir -p "$GOMODCACHE" "$GOCACHE"
	ensure_go
	gomod=$(cd "$GOMODCACHE" && GOFLAGS=-modcacherw go mod download -json "$MOD@$COMPOSE_VERSION" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
	[ -f "$gomod" ] || die "could not download the go.mod of $MOD@$COMPOSE_VERSION"
	ensure_go "$(awk '$1 == "go" {print $2; exit}' "$gomod")"
	log "building docker compose $COMPOSE_VERSION from the Go module proxy"
	# Its go.mod has exclude directives, which `go install pkg@version` refuses: build
	# from a throwaway module that requires it and repeats those excludes.
	src="$DIR/src"
	mkdir -p "$src"
	{
		echo "module mockaccel.invalid/compose-build"
		echo
		echo "go $(awk '$1 == "go" {print $2; exit}' "$gomod")"
		echo
		echo "require $MOD $COMPOSE_VERSION"
		echo
		awk '/^exclude \($/ {on = 1; print; next} on && /^\)/ {print; on = 0; next} on && !/^[[:space:]]*\/\// {print}' "$gomod"
	} >"$src/go.mod"
	rm -f "$src/go.sum" && rm -rf "$DIR/bin.tmp" && mkdir -p "$DIR/bin.tmp"
	(cd "$src" && GOTOOLCHAIN=local GOFLAGS="-mod=mod -modcacherw" go get "$MOD/cmd@$COMPOSE_VERSION" >&2)
	(cd "$src" && GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=mod -modcacherw" go build -trimpath \
		-ldflags="-s -w -X $MOD/internal.Version=$COMPOSE_VERSION" -o "$DIR/bin.tmp/docker-compose" "$MOD/cmd")
	rm -rf "${DIR:?}/bin" && mv "$DIR/bin.tmp" "$DIR/bin"
	log "built docker compose $COMPOSE_VERSION in $((SECONDS - started)) s"
fi

plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
mkdir -p "$plugins"
[ "$(readlink "$plugins/docker-compose" 2>/dev/null)" = "$PLUGIN" ] || ln -sfn "$PLUGIN" "$plugins/docker-compose"
"$PLUGIN" version >&2

printf 'COMPOSE_PLUGIN=%s\n' "$PLUGIN"
