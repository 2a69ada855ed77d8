#!/usr/bin/env bash
# demo.sh: l4raw balancing HTTP across three backends, in under a minute.
#
# Builds a LAN from network namespaces (a switch, a client, the balancer
# host "lb" and three l4echo backends), gives lb the VIP 198.18.0.100, runs
# l4raw there, sends traffic from the client, shows l4raw's counters, and
# removes everything again, whatever happens. Run it as root, after
# "make build" (it uses the binaries in bin/): sudo make demo.
#
# Environment:
#   DEMO_DIRECT=1   skip l4raw: the client talks to backend be1 directly
#                   (checks the topology and l4echo alone)
#   L4RAW_ARGS      extra arguments for l4raw
#   DEMO_BYTES      size of the download and the upload (default 256MiB)
#   BIN             where l4raw and l4echo are (default: bin/ of the checkout)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/netns-lib.sh
. "$root/scripts/netns-lib.sh"

readonly P=l4demo                  # namespace prefix: l4demo-cli, l4demo-lb, ...
readonly NET=198.18.0              # RFC 2544 benchmarking range
readonly CLIENT=$NET.10 LB=$NET.2 VIP=$NET.100 VPORT=80 BPORT=8080
readonly BACKENDS=("$NET.21" "$NET.22" "$NET.23")
readonly BYTES=${DEMO_BYTES:-256MiB}
readonly DIRECT=${DEMO_DIRECT:-0}
bin=${BIN:-$root/bin}
l4echo=$bin/l4echo
l4raw=$bin/l4raw

step=0
section() {
	step=$((step + 1))
	printf '\n== %d. %s\n' "$step" "$*"
}
say() { printf '   %s\n' "$*"; }
indent() { sed 's/^/   /'; }

# run CMD...: run a step in the background and wait for it, printing its
# output indented. bash runs the INT/TERM trap only between foreground
# commands, but at once during "wait": Ctrl-C stops the demo immediately.
run() {
	local rc=0
	"$@" >"$workdir/step.out" 2>&1 &
	wait $! || rc=$?
	indent <"$workdir/step.out"
	return "$rc"
}

nl_require_root
[[ -x $l4echo ]] || nl_die "$l4echo not found: run make build first"
if [[ $DIRECT != 1 && ! -x $l4raw ]]; then
	nl_die "$l4raw not found: run make build first (or DEMO_DIRECT=1 to try the topology without it)"
fi

# One demo at a time: the namespace names are fixed.
lockfile=${TMPDIR:-/tmp}/l4demo.lock
exec 9>"$lockfile"
flock -n 9 || nl_die "another demo is running (lock $lockfile)"

workdir=$(mktemp -d "${TMPDIR:-/tmp}/l4demo.XXXXXX")
pids=()
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	nl_cleanup "$P"
	rm -rf "$workdir"
	if [[ $rc -eq 0 ]]; then
		printf '\n== done in %d s; namespaces and processes removed\n' "$SECONDS"
	else
		printf '\n== failed (exit %d); namespaces and processes removed\n' "$rc" >&2
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

nl_cleanup "$P" # what a killed earlier demo left behind (we hold the lock)

echo "l4raw demo: a layer-4 load balancer on raw packets"

section "topology: one LAN, its switch in a namespace of its own"
nl_ns_add $P-sw
nl_switch $P-sw br0
nl_ns_add $P-cli
nl_plug $P-cli eth0 $CLIENT/24 $P-sw br0 cli
nl_ns_add $P-lb
nl_plug $P-lb eth0 $LB/24 $P-sw br0 lb
for i in "${!BACKENDS[@]}"; do
	nl_ns_add $P-be$((i + 1))
	nl_plug $P-be$((i + 1)) eth0 "${BACKENDS[i]}/24" $P-sw br0 be$((i + 1))
done
say "client $CLIENT   lb $LB   backends ${BACKENDS[*]}   (namespaces $P-*)"

section "backends: l4echo serve on port $BPORT"
for i in "${!BACKENDS[@]}"; do
	ip netns exec $P-be$((i + 1)) "$l4echo" serve --listen "${BACKENDS[i]}:$BPORT" --name be$((i + 1)) --cc cubic \
		>"$workdir/be$((i + 1)).log" 2>&1 &
	pids+=($!)
done
for b in "${BACKENDS[@]}"; do
	nl_wait_connect $P-cli "$b:$BPORT" "$l4echo" 25 || nl_die "backend $b:$BPORT does not answer"
done
say "be1, be2, be3 answer with their name and the client address they see"

if [[ $DIRECT == 1 ]]; then
	target=${BACKENDS[0]}:$BPORT
	section "l4raw: skipped (DEMO_DIRECT=1), the client talks to be1 at $target"
else
	target=$VIP:$VPORT
	section "l4raw on lb: VIP $target -> ${BACKENDS[*]/%/:$BPORT}"
	ip -n $P-lb addr add $VIP/32 dev eth0
	args=(--vip "$target")
	for b in "${BACKENDS[@]}"; do args+=(--backend "$b:$BPORT"); done
	# shellcheck disable=SC2206 # L4RAW_ARGS is split on purpose
	args+=(${L4RAW_ARGS:-})
	ip netns exec $P-lb "$l4raw" "${args[@]}" >"$workdir/l4raw.log" 2>&1 &
	l4raw_pid=$!
	pids+=("$l4raw_pid")
	say "ip netns exec $P-lb l4raw ${args[*]}"
	# Ready when the VIP accepts a connection: poll every 0.2 s for 10 s,
	# and stop at once if l4raw exits.
	ready=0
	for ((i = 0; i < 50; i++)); do
		kill -0 "$l4raw_pid" 2>/dev/null || break
		if ip netns exec $P-cli "$l4echo" connect --addr "$target" --timeout 200ms >/dev/null 2>&1; then
			ready=1
			break
		fi
		sleep 0.2
	done
	if [[ $ready != 1 ]]; then
		if ! kill -0 "$l4raw_pid" 2>/dev/null; then
			code=0
			wait "$l4raw_pid" || code=$?
			say "l4raw exited with code $code; its log:"
			tail -n 20 "$workdir/l4raw.log" | indent
			nl_die "l4raw exited before the VIP answered"
		fi
		tail -n 20 "$workdir/l4raw.log" | indent
		nl_die "the VIP $target does not accept connections after 10 s"
	fi
	say "the VIP accepts connections (after $((i * 200)) ms)"
fi

section "30 requests from the client, each on a new TCP connection"
run ip netns exec $P-cli "$l4echo" get --url "http://$target/" --count 30 --parallel 3 --cc cubic

section "bulk transfers of $BYTES, every byte checked"
run ip netns exec $P-cli "$l4echo" download --url "http://$target" --bytes "$BYTES" --cc cubic
run ip netns exec $P-cli "$l4echo" upload --url "http://$target" --bytes "$BYTES" --cc cubic

if [[ $DIRECT != 1 ]]; then
	section "l4raw's counters: it prints them when stopped with SIGTERM"
	kill -TERM "$l4raw_pid"
	for ((i = 0; i < 50; i++)); do
		kill -0 "$l4raw_pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$l4raw_pid" 2>/dev/null && say "(l4raw still running after 5 s; it is killed at cleanup)"
	# Its last counter block without the zeros, then its last log line; the
	# raw tail if the log has no counter block.
	header="== l4raw counters =="
	if grep -qF "$header" "$workdir/l4raw.log"; then
		awk -v h="$header" '$0 == h { block = "" } { block = block $0 "\n" } END { printf "%s", block }' \
			"$workdir/l4raw.log" | grep -Ev '^[a-z0-9_]+[[:space:]]+0$' | indent
		say "(counters at 0 left out)"
	else
		tail -n 15 "$workdir/l4raw.log" | indent
	fi
fi
