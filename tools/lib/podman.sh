# shellcheck shell=bash
# podman helpers shared by the image scripts (tools/images, tools/provision/kmm-base-image.sh).
# Source it after tools/lib/common.sh; it defines functions only.
#
# Why: this machine has no container registry and no systemd, and root lacks
# CAP_SYS_RESOURCE. podman (with runc: crun fails on these hybrid-cgroup VMs)
# needs a containers.conf for that, every base image is bootstrapped here with
# mmdebstrap, and the Docker-compatible API service that testcontainers talks to
# has to be started by hand (docs: ../shared/spec/environment.md, "Containers").

PODMAN_CONF=/etc/containers/containers.conf
PODMAN_SOCKET=${PODMAN_SOCKET:-/run/podman/podman.sock}

# Install podman, runc and mmdebstrap, and write containers.conf (only when missing or different).
ensure_podman() {
	ensure_apt podman runc mmdebstrap
	local want
	want=$(cat <<'EOF'
# Written by tools/lib/podman.sh: root lacks CAP_SYS_RESOURCE and
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
	if [ "$(cat "$PODMAN_CONF" 2>/dev/null)" != "$want" ]; then
		mkdir -p "$(dirname "$PODMAN_CONF")"
		printf '%s\n' "$want" >"$PODMAN_CONF"
	fi
}

# debian_base_image IMAGE SUITE PACKAGES [VARIANT [MMDEBSTRAP_OPTION...]]
# Bootstrap SUITE with mmdebstrap (VARIANT, default "apt") plus the comma-separated
# PACKAGES, without man pages, docs and locales, and import it as IMAGE. Idempotent:
# an existing IMAGE whose mock-accel.packages label matches (variant, options and
# packages) is kept.
debian_base_image() {
	local image=$1 suite=$2 packages=$3 variant=${4:-apt}
	shift 3
	[ $# -gt 0 ] && shift
	local key=$packages
	if [ "$variant" != apt ] || [ $# -gt 0 ]; then key="$variant:$*:$packages"; fi
	if podman image exists "$image" &&
		[ "$(podman image inspect --format '{{index .Labels "mock-accel.packages"}}' "$image")" = "$key" ]; then
		return 0
	fi
	log "mmdebstrap --variant=$variant $* $suite ($packages) | podman import $image"
	local started=$SECONDS
	mmdebstrap --quiet --variant="$variant" --include="$packages" "$@" \
		--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
		"$suite" - "$(debian_mirror)" |
		podman import --change "LABEL mock-accel.packages=$key" \
			--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
			- "$image" >&2
	log "$image bootstrapped in $((SECONDS - started)) s"
}

# podman_service_runs_containers IMAGE
# True when the service on PODMAN_SOCKET can create, start, wait for and remove
# a container of IMAGE. A long-lived service can answer _ping and still fail
# every start ("write child: broken pipe", defunct conmon children), so a ping
# alone does not prove it usable.
podman_service_runs_containers() {
	local image=$1 api="http://d/v1.41" id code
	id=$(curl -fsS --max-time 20 --unix-socket "$PODMAN_SOCKET" -H 'Content-Type: application/json' \
		-d "{\"Image\":\"$image\",\"Entrypoint\":[\"true\"],\"Cmd\":[],\"Labels\":{\"mock-accel.probe\":\"1\"}}" \
		"$api/containers/create" 2>/dev/null | sed -n 's/.*"Id":"\([0-9a-f]*\)".*/\1/p') || true
	[ -n "$id" ] || return 1
	code=$(curl -fsS --max-time 20 --unix-socket "$PODMAN_SOCKET" -X POST "$api/containers/$id/start" >/dev/null 2>&1 &&
		curl -fsS --max-time 30 --unix-socket "$PODMAN_SOCKET" -X POST "$api/containers/$id/wait" 2>/dev/null |
		sed -n 's/.*"StatusCode":\([0-9]*\).*/\1/p') || true
	curl -fsS --max-time 20 --unix-socket "$PODMAN_SOCKET" -X DELETE "$api/containers/$id?force=true" >/dev/null 2>&1 || true
	[ "$code" = 0 ]
}

# Start podman's Docker-compatible API service unless one already answers on
# PODMAN_SOCKET and can run a container of PROBE_IMAGE (optional first argument;
# without it a ping is enough). A service that answers but cannot run containers
# is stopped and replaced; containers it started keep running (conmon owns them).
# Detached (setsid, own session, output to a log under MOCKACCEL_CACHE) so it
# outlives the calling script; --time=0 keeps it up. Prints DOCKER_HOST=unix://PODMAN_SOCKET.
ensure_podman_service() {
	local probe=${1:-} pidfile="$MOCKACCEL_CACHE/podman-service.pid"
	if curl -fsS --max-time 2 --unix-socket "$PODMAN_SOCKET" http://d/_ping >/dev/null 2>&1; then
		if [ -z "$probe" ] || podman_service_runs_containers "$probe"; then
			printf 'DOCKER_HOST=unix://%s\n' "$PODMAN_SOCKET"
			return 0
		fi
		log "podman system service on $PODMAN_SOCKET answers but cannot run a container; restarting it"
		local pids
		pids=$( { cat "$pidfile" 2>/dev/null; pgrep -f "podman system service .*unix://$PODMAN_SOCKET" || true; } | sort -u)
		# shellcheck disable=SC2086
		[ -z "$pids" ] || kill $pids 2>/dev/null || true
		local i
		for i in $(seq 1 50); do
			curl -fsS --max-time 1 --unix-socket "$PODMAN_SOCKET" http://d/_ping >/dev/null 2>&1 || break
			sleep 0.1
		done
	fi
	log "starting podman system service on $PODMAN_SOCKET"
	mkdir -p "$(dirname "$PODMAN_SOCKET")" "$MOCKACCEL_CACHE"
	rm -f "$PODMAN_SOCKET"
	setsid podman system service --time=0 "unix://$PODMAN_SOCKET" \
		</dev/null >>"$MOCKACCEL_CACHE/podman-service.log" 2>&1 &
	echo $! >"$pidfile"
	local i
	for i in $(seq 1 100); do
		curl -fsS --max-time 2 --unix-socket "$PODMAN_SOCKET" http://d/_ping >/dev/null 2>&1 && break
		[ "$i" -lt 100 ] || die "podman system service did not answer on $PODMAN_SOCKET"
		sleep 0.1
	done
	if [ -n "$probe" ] && ! podman_service_runs_containers "$probe"; then
		die "a fresh podman system service on $PODMAN_SOCKET cannot run $probe (log: $MOCKACCEL_CACHE/podman-service.log)"
	fi
	printf 'DOCKER_HOST=unix://%s\n' "$PODMAN_SOCKET"
}
