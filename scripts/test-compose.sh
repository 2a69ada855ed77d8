#!/usr/bin/env bash
# Runs the compose demo for real: builds the scratch images from bin/ (make
# build first), "docker-compose up" of deploy/compose/compose.yaml until the
# client exits, checks its exit code and output, "down", and checks that
# nothing of the project is left.
#
# Uses the Docker daemon that answers if there is one. Otherwise it starts
# its own (root only) with its state in a temporary directory and its own
# socket, and stops it at the end. That daemon leaves the root network
# namespace alone: no iptables rules (--iptables=false), no ip_forward
# change (--ip-forward=false), no docker0 (--bridge=none); the demo's bridge
# (198.18.200.0/24) exists only while the demo runs, and any network Docker
# picks itself comes from 198.19.128.0/18, inside 198.18.0.0/15.
#
# A missing docker, dockerd or docker-compose is a failure, never a skip.
# Usage: scripts/test-compose.sh   (VERSION tags the images; GO)
set -euo pipefail
cd "$(dirname "$0")/.."

COMPOSE_FILE=deploy/compose/compose.yaml
PROJECT=l4raw-demo # deploy/compose/.env
# Bounds: images, daemon start and the whole "up" (the demo itself takes a
# few seconds: health checks every 1-2 s, then 30 requests).
DAEMON_WAIT=30
UP_TIMEOUT=120

fail() { echo "test-compose: FAIL: $*" >&2; exit 1; }
log() { echo "test-compose: $*"; }

command -v docker >/dev/null || fail "docker not found: apt-get install docker.io"
if command -v docker-compose >/dev/null; then
	compose=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
	compose=(docker compose)
else
	fail "docker-compose not found: apt-get install docker-compose"
fi
compose+=(-f "$COMPOSE_FILE" -p "$PROJECT")

tmp=$(mktemp -d /tmp/l4t-compose-XXXXXX)
dockerd_pid=
cleanup() {
	local rc=$?
	if [ -n "${compose_started:-}" ]; then
		"${compose[@]}" down --volumes --remove-orphans >/dev/null 2>&1 || true
	fi
	if [ -n "$dockerd_pid" ]; then
		kill -TERM "$dockerd_pid" 2>/dev/null || true
		for _ in $(seq 1 "$DAEMON_WAIT"); do
			kill -0 "$dockerd_pid" 2>/dev/null || break
			sleep 1
		done
		if kill -0 "$dockerd_pid" 2>/dev/null; then
			echo "test-compose: dockerd $dockerd_pid did not stop; killing it" >&2
			kill -KILL "$dockerd_pid" 2>/dev/null || true
		fi
		[ $rc -eq 0 ] || { echo "--- dockerd log (tail)"; tail -n 30 "$tmp/dockerd.log"; } >&2
		# Whatever a killed daemon left mounted under its data root.
		grep -o " $tmp/[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	fi
	rm -rf "$tmp"
	exit $rc
}
trap cleanup EXIT

if docker info >/dev/null 2>&1; then
	log "using the running Docker daemon"
else
	[ "$(id -u)" = 0 ] || fail "no Docker daemon answers, and only root may start one"
	command -v dockerd >/dev/null || fail "dockerd not found: apt-get install docker.io"
	log "starting dockerd (state in $tmp)"
	mkdir -p "$tmp/data" "$tmp/exec"
	export DOCKER_HOST=unix://$tmp/docker.sock
	dockerd --host "$DOCKER_HOST" --data-root "$tmp/data" --exec-root "$tmp/exec" --pidfile "$tmp/dockerd.pid" \
		--iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none \
		--default-address-pool base=198.19.128.0/18,size=24 >"$tmp/dockerd.log" 2>&1 &
	dockerd_pid=$!
	for i in $(seq 1 "$DAEMON_WAIT"); do
		docker info >/dev/null 2>&1 && break
		kill -0 "$dockerd_pid" 2>/dev/null || fail "dockerd exited: $(tail -n 5 "$tmp/dockerd.log")"
		[ "$i" -lt "$DAEMON_WAIT" ] || fail "dockerd did not answer within ${DAEMON_WAIT}s"
		sleep 1
	done
fi

scripts/image.sh

# Nothing of the project may exist before (a crashed run is cleaned first).
"${compose[@]}" down --volumes --remove-orphans >/dev/null 2>&1 || true

log "docker-compose up"
compose_started=1
start=$(date +%s%N)
set +e
timeout --kill-after=10 "$UP_TIMEOUT" "${compose[@]}" up --no-build --no-color --abort-on-container-exit --exit-code-from client >"$tmp/up.log" 2>&1
code=$?
set -e
took_ms=$((($(date +%s%N) - start) / 1000000))
# Compose prefixes each line with the container's name and "|".
# Compose prefixes each line with the container's name and "|" (and may
# still color it).
client=$(sed 's/\x1b\[[0-9;]*m//g' "$tmp/up.log" | grep -E '^[^|]*client[^|]*\|' | sed 's/^[^|]*| \{0,1\}//' || true)
echo "--- client output"
echo "$client"
echo "---"
if [ $code -ne 0 ]; then
	echo "--- docker-compose up output"
	cat "$tmp/up.log"
	fail "docker-compose up exited $code (want 0, the client's exit code)"
fi
grep -q '^30 requests to http://198.18.200.2:80/: 30 ok' <<<"$client" || fail "client: not 30 of 30 requests ok"
log "up took ${took_ms} ms"

"${compose[@]}" down --volumes --remove-orphans >"$tmp/down.log" 2>&1 || { cat "$tmp/down.log"; fail "docker-compose down failed"; }
compose_started=
left=$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT")
[ -z "$left" ] || fail "containers left after down: $left"
left=$(docker network ls -q --filter "label=com.docker.compose.project=$PROJECT")
[ -z "$left" ] || fail "networks left after down: $left"
if ip -br addr show | grep -q '198\.18\.200\.'; then
	fail "an interface with 198.18.200.0/24 is left in the root namespace: $(ip -br addr show | grep '198\.18\.200\.')"
fi
log "ok: down left no container, network or bridge"
