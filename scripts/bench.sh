#!/usr/bin/env bash
# bench.sh: l4raw against kernel NAT, HAProxy and a Go proxy, measured in
# one run on a LAN made of network namespaces. Needs root.
#
# Topology (all in 198.18.0.0/24, RFC 2544 benchmarking range; one LAN, its
# switch in a namespace of its own; veth offloads left at their defaults):
#
#   l4b-cli  client   198.18.0.10 .. (one address per --client-addrs)
#   l4b-lb   balancer 198.18.0.2, VIP 198.18.0.100
#   l4b-be1..3        198.18.0.21 .. .23 (l4bench serve :8080; be1 also iperf3 -s :5201)
#
# Modes: direct (client to be1, the network's limit), l4raw, kernel
# (iptables DNAT with statistic nth round robin + MASQUERADE), haproxy (mode
# tcp, roundrobin), goproxy (l4bench proxy: io.Copy, round robin).
# Tests: iperf3-1, iperf3-8 (one stream, 8 streams; a service with ONE
# backend in every mode, since iperf3's data connections must reach the
# server of its control connection), conn (short connections over 3
# backends round robin). Each repetition runs every mode, each mode on
# freshly made namespaces; the mode order rotates from one repetition to
# the next, so no mode always runs first or last.
#
# Results go to a directory (default bench-results/<UTC time>/): results.json
# (every sample), results.md (tables with ratios to kernel and direct),
# chart.svg, meta.txt, samples/, logs/. Namespaces and processes are removed
# on exit, whatever happens. Nothing outside the l4b-* namespaces is touched.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/netns-lib.sh
. "$root/scripts/netns-lib.sh"

usage() {
	cat <<'EOF'
usage: scripts/bench.sh [flags]        (as root: sudo make bench)

  --reps N            repetitions (default 3; smoke 1)
  --iperf-time S      seconds of each iperf3 test (default 10; smoke 2)
  --iperf-omit S      seconds at the start of iperf3 left out (default 1; smoke 0)
  --conn-time S       seconds of the short-connection test (default 20; smoke 2)
  --conn-workers N    short-connection workers (default 32)
  --client-addrs N    client addresses, bound round robin (default 4, at most 10)
  --settle S          pause between two tests (default 1; smoke 0)
  --modes LIST        comma-separated subset of direct,l4raw,kernel,haproxy,goproxy
  --tests LIST        comma-separated subset of iperf3-1,iperf3-8,conn
  --out DIR           results directory (default bench-results/<UTC time>)
  --bin DIR           use DIR/l4raw and DIR/l4bench instead of building them
  --l4raw-args ARGS   extra l4raw flags, split on spaces (default: none, l4raw's defaults)
  --smoke             one short repetition of everything: checks that the bench works
  -h, --help          this text
EOF
}

die() { nl_die "$*"; }

reps="" iperf_time="" iperf_omit="" conn_time="" settle=""
conn_workers=32 client_addrs=4 smoke=0 out="" bin="" l4raw_args=""
modes_arg=direct,l4raw,kernel,haproxy,goproxy tests_arg=iperf3-1,iperf3-8,conn
invocation="scripts/bench.sh $*"
need() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value (see --help)"; }
while [[ $# -gt 0 ]]; do
	case $1 in
	--reps) need "$@"; reps=$2; shift 2 ;;
	--iperf-time) need "$@"; iperf_time=$2; shift 2 ;;
	--iperf-omit) need "$@"; iperf_omit=$2; shift 2 ;;
	--conn-time) need "$@"; conn_time=$2; shift 2 ;;
	--conn-workers) need "$@"; conn_workers=$2; shift 2 ;;
	--client-addrs) need "$@"; client_addrs=$2; shift 2 ;;
	--settle) need "$@"; settle=$2; shift 2 ;;
	--modes) need "$@"; modes_arg=$2; shift 2 ;;
	--tests) need "$@"; tests_arg=$2; shift 2 ;;
	--out) need "$@"; out=$2; shift 2 ;;
	--bin) need "$@"; bin=$2; shift 2 ;;
	--l4raw-args) need "$@"; l4raw_args=$2; shift 2 ;;
	--smoke) smoke=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument $1" ;;
	esac
done
if [[ $smoke == 1 ]]; then
	: "${reps:=1}" "${iperf_time:=2}" "${iperf_omit:=0}" "${conn_time:=2}" "${settle:=0}"
else
	: "${reps:=3}" "${iperf_time:=10}" "${iperf_omit:=1}" "${conn_time:=20}" "${settle:=1}"
fi
# int_in NAME VALUE LO HI: VALUE is an integer from LO to HI, or die.
int_in() {
	[[ $2 =~ ^[0-9]+$ ]] && (($2 >= $3 && $2 <= $4)) && return 0
	die "$1 $2: want an integer from $3 to $4"
}
int_in --reps "$reps" 1 100
int_in --iperf-time "$iperf_time" 1 600
int_in --iperf-omit "$iperf_omit" 0 60
int_in --conn-time "$conn_time" 1 600
int_in --conn-workers "$conn_workers" 1 4096
int_in --client-addrs "$client_addrs" 1 10
[[ $settle =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--settle $settle: want seconds"
IFS=, read -r -a modes <<<"$modes_arg"
IFS=, read -r -a tests <<<"$tests_arg"
for m in "${modes[@]}"; do
	[[ $m =~ ^(direct|l4raw|kernel|haproxy|goproxy)$ ]] || die "--modes: unknown mode $m"
done
for t in "${tests[@]}"; do
	[[ $t =~ ^(iperf3-1|iperf3-8|conn)$ ]] || die "--tests: unknown test $t"
done
((${#modes[@]} > 0 && ${#tests[@]} > 0)) || die "no mode or no test to run"
has_mode() { [[ ",$modes_arg," == *",$1,"* ]]; }

# --- requirements -----------------------------------------------------------

nl_require_root
missing=()
for c in iperf3:iperf3 iptables:iptables ss:iproute2 flock:util-linux; do
	command -v "${c%%:*}" >/dev/null || missing+=("${c%%:*} (apt-get install ${c#*:})")
done
if has_mode haproxy; then
	command -v haproxy >/dev/null || missing+=("haproxy (apt-get install haproxy)")
fi
if [[ -z $bin ]]; then
	command -v go >/dev/null || missing+=("go (https://go.dev/dl/), or --bin DIR with l4raw and l4bench")
fi
((${#missing[@]} == 0)) || die "missing: ${missing[*]}"

# One bench at a time: the namespace names are fixed, and two benches on
# the same CPUs would measure each other.
lockfile=${TMPDIR:-/tmp}/l4bench.lock
exec 9>"$lockfile"
flock -n 9 || die "another bench is running (lock $lockfile)"

# --- constants ----------------------------------------------------------------

readonly P=l4b # namespace prefix
readonly NET=198.18.0 LAN=198.18.0.0/24
readonly LB=$NET.2 VIP=$NET.100
readonly BACKENDS=("$NET.21" "$NET.22" "$NET.23")
readonly CONN_PORT=80 IPERF_PORT=5201 BPORT=8080
backend_ns=$P-be1,$P-be2,$P-be3
clients=()
for ((i = 0; i < client_addrs; i++)); do clients+=("$NET.$((10 + i))"); done
client_list=$(IFS=,; echo "${clients[*]}")

# --- work and results directories -------------------------------------------

workdir=$(mktemp -d "${TMPDIR:-/tmp}/l4bench.XXXXXX")
out=${out:-$root/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
[[ -z $(ls -A "$out/samples" 2>/dev/null) ]] || die "$out/samples is not empty: pick a new --out"
mkdir -p "$out/samples" "$out/logs"
out=$(cd "$out" && pwd)
logs=$out/logs

pids=() # background processes of the current mode
failures=0
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
	nl_cleanup "$P"
	rm -rf "$workdir"
	if [[ $rc -ne 0 ]]; then
		echo "bench failed (exit $rc); namespaces removed; results so far in $out" >&2
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

nl_cleanup "$P" # what a killed earlier bench left (we hold the lock)

say() { printf '%s\n' "$*"; }

# run CMD...: a foreground step that Ctrl-C interrupts at once (bash runs
# traps only between foreground commands, but during "wait" at once).
run() {
	local rc=0
	"$@" &
	wait $! || rc=$?
	return "$rc"
}

# --- binaries -------------------------------------------------------------------

if [[ -z $bin ]]; then
	bin=$workdir/bin
	say "building l4raw and l4bench (CGO_ENABLED=0)"
	version=$(git -C "$root" describe --tags --always --dirty 2>/dev/null || echo dev)
	commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
	(cd "$root" && export CGO_ENABLED=0 &&
		run go build -trimpath -ldflags "-s -w -X main.version=$version -X main.commit=$commit" -o "$bin/" ./cmd/l4raw ./cmd/l4bench) ||
		die "go build failed"
fi
bin=$(cd "$bin" && pwd)
l4raw=$bin/l4raw
l4bench=$bin/l4bench
if has_mode l4raw && [[ ! -x $l4raw ]]; then die "$l4raw not found"; fi
[[ -x $l4bench ]] || die "$l4bench not found"

# --- metadata -------------------------------------------------------------------

cc_default=0
nl_cc_allowed cubic && cc_default=1
if [[ $cc_default == 1 ]]; then
	cc_text="cubic: every namespace's default, and per socket (iperf3 -C, l4bench --cc)"
else
	cc_text="cubic per socket (iperf3 -C cubic, l4bench --cc cubic) and per route (ip route ... congctl cubic, for haproxy): the host does not allow cubic as a namespace default ($(cat /proc/sys/net/ipv4/tcp_allowed_congestion_control))"
fi
meta=$out/meta.txt
{
	echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "machine=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
	echo "cpus=$(nproc) (client, balancer and backends share them; nothing is pinned)"
	echo "memory=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
	echo "kernel=$(uname -sr)"
	echo "l4raw=$("$l4raw" --version 2>&1 | head -n 1)"
	echo "checkout=$(git -C "$root" describe --tags --always --dirty 2>/dev/null || echo unknown)"
	has_mode haproxy && echo "haproxy=$(haproxy -v 2>/dev/null | head -n 1)"
	echo "iperf3=$(iperf3 --version 2>/dev/null | head -n 1)"
	command -v go >/dev/null && echo "go=$(go version)"
	echo "congestion_control=$cc_text"
	echo "iperf_seconds=$iperf_time"
	echo "iperf_omit=$iperf_omit"
	echo "conn_seconds=$conn_time"
	echo "conn_workers=$conn_workers"
	echo "client_addrs=$client_list"
	[[ -n $l4raw_args ]] && echo "l4raw_args=$l4raw_args"
	echo "modes=$modes_arg"
	echo "tests=$tests_arg"
	echo "smoke=$smoke"
	echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
	echo "command=$invocation"
} >"$meta"
declare -A seen_cmd=()
# meta_cmd LINE: record a command of the run once.
meta_cmd() {
	[[ -n ${seen_cmd[$1]:-} ]] && return 0
	seen_cmd[$1]=1
	echo "command=$1" >>"$meta"
}

# --- topology -------------------------------------------------------------------

# host NS IP: a host on the LAN. Without cubic as a namespace default, its
# LAN route carries "congctl cubic", which gives cubic to every TCP socket
# of the namespace that sets nothing itself (haproxy has no such option).
host() {
	local ns=$1 ip=$2
	nl_ns_add "$ns"
	nl_plug "$ns" eth0 "$ip/24" $P-sw br0 "${ns#"$P"-}"
	if [[ $cc_default == 0 ]]; then
		ip -n "$ns" route replace $LAN dev eth0 proto kernel scope link src "$ip" congctl cubic
	fi
}

topo_up() {
	nl_ns_add $P-sw
	nl_switch $P-sw br0
	host $P-cli "${clients[0]}"
	for ((i = 1; i < ${#clients[@]}; i++)); do
		ip -n $P-cli addr add "${clients[i]}/24" dev eth0
	done
	host $P-lb $LB
	for i in "${!BACKENDS[@]}"; do
		host $P-be$((i + 1)) "${BACKENDS[i]}"
	done
}

# stop PID: SIGTERM, up to 5 s, then SIGKILL.
stop() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

topo_down() {
	local pid
	for pid in "${pids[@]}"; do stop "$pid"; done
	pids=()
	nl_cleanup "$P"
}

# start NS LOG CMD...: run CMD in NS in the background; sets $started.
start() {
	local ns=$1 log=$2
	shift 2
	ip netns exec "$ns" "$@" >"$log" 2>&1 &
	started=$!
	disown "$started" # no job notices when cleanup kills it
	pids+=("$started")
}

# wait_listen NS PORT PID: until NS has a TCP listener on PORT (10 s), as
# long as PID runs.
wait_listen() {
	local i
	for ((i = 0; i < 100; i++)); do
		kill -0 "$3" 2>/dev/null || return 1
		[[ -n $(ip netns exec "$1" ss -Hltn "sport = :$2") ]] && return 0
		sleep 0.1
	done
	return 1
}

# wait_log FILE TEXT PID: until FILE contains TEXT (30 s), as long as PID runs.
wait_log() {
	local i
	for ((i = 0; i < 300; i++)); do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		kill -0 "$3" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# probe ADDR:PORT: a TCP connect from the client succeeds within 10 s.
probe() {
	ip netns exec $P-cli "$l4bench" wait --target "$1" --timeout 10s >/dev/null
}

backends_up() {
	local tag=$1 i
	for i in "${!BACKENDS[@]}"; do
		start $P-be$((i + 1)) "$logs/$tag-be$((i + 1)).log" "$l4bench" serve --listen "${BACKENDS[i]}:$BPORT" --cc cubic
	done
	meta_cmd "l4bench serve --listen BACKEND:$BPORT --cc cubic   (on each backend)"
	start $P-be1 "$logs/$tag-iperf3-server.log" iperf3 -s -p $IPERF_PORT
	wait_listen $P-be1 $IPERF_PORT "$started" || die "iperf3 -s does not listen on ${BACKENDS[0]}:$IPERF_PORT"
	meta_cmd "iperf3 -s -p $IPERF_PORT   (on be1)"
	for i in "${!BACKENDS[@]}"; do
		probe "${BACKENDS[i]}:$BPORT" || die "backend ${BACKENDS[i]}:$BPORT does not answer"
	done
}

# The two services: iperf (VIP:5201 -> be1:5201 only) and conn (VIP:80 ->
# the three backends :8080).
svc_port() { if [[ $1 == iperf ]]; then echo $IPERF_PORT; else echo $CONN_PORT; fi; }
svc_backends() {
	if [[ $1 == iperf ]]; then
		echo "${BACKENDS[0]}:$IPERF_PORT"
	else
		local b
		for b in "${BACKENDS[@]}"; do echo "$b:$BPORT"; done
	fi
}

kernel_rules() {
	local r=(iptables -w 5 -t nat)
	ip netns exec $P-lb sysctl -q -w net.ipv4.ip_forward=1 net.ipv4.conf.all.send_redirects=0 \
		net.ipv4.conf.default.send_redirects=0 net.ipv4.conf.eth0.send_redirects=0
	local rules=(
		# Round robin over three: every 3rd new connection, then every 2nd of the rest, then the rest.
		"-A PREROUTING -d $VIP -p tcp --dport $CONN_PORT -m statistic --mode nth --every 3 --packet 0 -j DNAT --to-destination ${BACKENDS[0]}:$BPORT"
		"-A PREROUTING -d $VIP -p tcp --dport $CONN_PORT -m statistic --mode nth --every 2 --packet 0 -j DNAT --to-destination ${BACKENDS[1]}:$BPORT"
		"-A PREROUTING -d $VIP -p tcp --dport $CONN_PORT -j DNAT --to-destination ${BACKENDS[2]}:$BPORT"
		"-A PREROUTING -d $VIP -p tcp --dport $IPERF_PORT -j DNAT --to-destination ${BACKENDS[0]}:$IPERF_PORT"
		# Full NAT on one LAN: the backends answer the balancer, not the client.
		"-A POSTROUTING -o eth0 -d $LAN -m conntrack --ctstate DNAT -j MASQUERADE"
	)
	local rule
	for rule in "${rules[@]}"; do
		# shellcheck disable=SC2086 # a rule is split into words on purpose
		ip netns exec $P-lb "${r[@]}" $rule || die "iptables ${r[*]:3} $rule failed"
		meta_cmd "iptables -t nat $rule   (kernel, in the balancer namespace, with ip_forward=1)"
	done
}

haproxy_cfg() {
	local svc=$1 port i=0 b check=check
	port=$(svc_port "$svc")
	# The iperf3 server must not see health checks (a stray connection can
	# break its stream set-up): check the service port of the conn test.
	[[ $svc == iperf ]] && check="check port $BPORT"
	cat <<EOF
global
    # Two descriptors per connection must fit the hard RLIMIT_NOFILE
    # (ulimit -Hn $(ulimit -Hn)); the test holds at most --conn-workers at once.
    maxconn $(( ($(ulimit -Hn) - 100) / 2 > 50000 ? 50000 : ($(ulimit -Hn) - 100) / 2 ))
    # no log: per-connection logging would cost haproxy CPU the other modes do not pay

defaults
    mode tcp
    timeout connect 5s
    timeout client 1m
    timeout server 1m

frontend $svc
    bind $VIP:$port
    default_backend ${svc}_servers

backend ${svc}_servers
    balance roundrobin
EOF
	for b in $(svc_backends "$svc"); do
		i=$((i + 1))
		echo "    server be$i $b $check"
	done
}

# balancer_up MODE SERVICE TAG: start the balancer of a service; sets
# $target (what the client connects to), $bpid (the balancer's pid, or
# empty) and $cpu_args (how measure counts its CPU).
balancer_up() {
	local mode=$1 svc=$2 tag=$3 port log args b
	port=$(svc_port "$svc")
	bpid="" cpu_args=()
	case $mode in
	direct)
		if [[ $svc == iperf ]]; then target=${BACKENDS[0]}:$IPERF_PORT; else target=${BACKENDS[0]}:$BPORT; fi
		;;
	kernel)
		target=$VIP:$port
		cpu_args=(--machine-cpu)
		;;
	l4raw)
		target=$VIP:$port
		log=$logs/$tag-l4raw-$svc.log
		args=(--vip "$target")
		for b in $(svc_backends "$svc"); do args+=(--backend "$b"); done
		[[ $svc == iperf ]] && args+=(--health-port "$BPORT")
		# shellcheck disable=SC2206 # --l4raw-args is split on purpose
		args+=(${l4raw_args})
		start $P-lb "$log" "$l4raw" "${args[@]}"
		bpid=$started
		meta_cmd "l4raw ${args[*]}"
		wait_log "$log" "msg=forwarding" "$bpid" || {
			tail -n 20 "$log" >&2
			die "l4raw did not start forwarding (log $log)"
		}
		;;
	haproxy)
		target=$VIP:$port
		haproxy_cfg "$svc" >"$logs/$tag-haproxy-$svc.cfg"
		start $P-lb "$logs/$tag-haproxy-$svc.log" haproxy -db -f "$logs/$tag-haproxy-$svc.cfg"
		bpid=$started
		meta_cmd "haproxy -db -f haproxy-$svc.cfg   (the file is in logs/)"
		wait_listen $P-lb "$port" "$bpid" || die "haproxy does not listen on $target (log $logs/$tag-haproxy-$svc.log)"
		;;
	goproxy)
		target=$VIP:$port
		args=(proxy --listen "$target" --backend "$(svc_backends "$svc" | paste -sd,)" --cc cubic)
		start $P-lb "$logs/$tag-goproxy-$svc.log" "$l4bench" "${args[@]}"
		bpid=$started
		meta_cmd "l4bench ${args[*]}"
		wait_listen $P-lb "$port" "$bpid" || die "l4bench proxy does not listen on $target"
		;;
	esac
	[[ -n $bpid ]] && cpu_args=(--pid "$bpid")
	# The short-connection service answers a bare connect: check the whole
	# path. (iperf3 would take a bare connect for a broken client.)
	if [[ $svc == conn ]]; then
		probe "$target" || die "$mode: $target does not accept connections"
	fi
	return 0
}

balancer_down() {
	[[ -n ${bpid:-} ]] || return 0
	stop "$bpid"
	local keep=() pid
	for pid in "${pids[@]}"; do [[ $pid == "$bpid" ]] || keep+=("$pid"); done
	pids=("${keep[@]}")
	bpid=""
}

# run_test MODE TEST REP TAG: one measured test, retried once if the tool
# itself fails (iperf3 "server busy" and the like); a second failure is
# recorded in the sample and counted.
run_test() {
	local mode=$1 test=$2 rep=$3 tag=$4 kind cmd attempt rc limit host port sspid
	host=${target%:*} port=${target##*:}
	case $test in
	iperf3-1 | iperf3-8)
		kind=iperf3
		cmd=(iperf3 -c "$host" -p "$port" -t "$iperf_time" -O "$iperf_omit" -P "${test#iperf3-}" -C cubic -J --connect-timeout 3000)
		limit=$((iperf_time + iperf_omit + 60))
		meta_cmd "iperf3 -c TARGET -p PORT -t $iperf_time -O $iperf_omit -P ${test#iperf3-} -C cubic -J --connect-timeout 3000"
		;;
	conn)
		kind=load
		cmd=("$l4bench" load --target "$target" --workers "$conn_workers" --duration "${conn_time}s"
			--source-addrs "$client_list" --cc cubic --json)
		limit=$((conn_time + 60))
		meta_cmd "l4bench load --target TARGET --workers $conn_workers --duration ${conn_time}s --source-addrs $client_list --cc cubic --json"
		;;
	esac
	for attempt in 1 2; do
		# Congestion control and sockets of the balancer host, mid-test.
		sspid=""
		if [[ $kind == iperf3 ]]; then
			(sleep 1 && ip netns exec $P-lb ss -tin >"$logs/$tag-$test-lb-ss.txt" 2>&1) &
			sspid=$!
		fi
		rc=0
		run ip netns exec $P-cli "$l4bench" measure --mode "$mode" --test "$test" --rep "$rep" --attempt "$attempt" \
			--kind "$kind" "${cpu_args[@]}" --timeout "${limit}s" --backend-ns "$backend_ns" \
			--out "$out/samples/$tag-$test.json" --raw "$logs/$tag-$test.out" -- "${cmd[@]}" \
			2>>"$logs/$tag-$test.err" || rc=$?
		[[ -z $sspid ]] || wait "$sspid" || true
		[[ $rc == 0 ]] && return 0
		say "   $mode $test rep $rep attempt $attempt failed: $(tail -n 1 "$logs/$tag-$test.err")"
		sleep 1
	done
	failures=$((failures + 1))
}

# snapshot TAG: counters of every namespace after a mode, for digging.
snapshot() {
	local tag=$1 ns
	for ns in $(ip netns list | awk -v p="$P-" 'index($1, p) == 1 { print $1 }'); do
		ip netns exec "$ns" cat /proc/net/snmp /proc/net/netstat >"$logs/$tag-${ns#"$P"-}.snmp" 2>/dev/null || true
	done
	if [[ $2 == kernel ]]; then
		{
			ip netns exec $P-lb iptables -w 5 -t nat -L -n -v -x
			echo "nf_conntrack_count $(ip netns exec $P-lb cat /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null)"
		} >"$logs/$tag-iptables.txt" 2>&1 || true
	fi
}

# --- the run ----------------------------------------------------------------------

say "results: $out"
say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)"
run_started=$SECONDS
for ((rep = 1; rep <= reps; rep++)); do
	n=${#modes[@]}
	for ((k = 0; k < n; k++)); do
		mode=${modes[(k + rep - 1) % n]}
		tag=r$rep-$mode
		say "== rep $rep/$reps: $mode"
		topo_up
		backends_up "$tag"
		if [[ $mode != direct ]]; then
			ip -n $P-lb addr add $VIP/32 dev eth0
		fi
		[[ $mode == kernel ]] && kernel_rules
		svc=""
		bpid=""
		for test in "${tests[@]}"; do
			want=conn
			[[ $test == iperf3-* ]] && want=iperf
			if [[ $svc != "$want" ]]; then
				balancer_down
				balancer_up "$mode" "$want" "$tag"
				svc=$want
			fi
			run_test "$mode" "$test" "$rep" "$tag"
			sleep "$settle"
		done
		balancer_down
		snapshot "$tag" "$mode"
		topo_down
	done
done
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$meta"
say "tests done in $((SECONDS - run_started)) s; load average now $(cut -d' ' -f1-3 /proc/loadavg)"

"$l4bench" report --dir "$out" >/dev/null
say ""
sed -n '/^## Ratios/,/^!\[/p' "$out/results.md" | sed '$d'
say "results: $out/results.md, $out/results.json, $out/chart.svg"
if ((failures > 0)); then
	die "$failures test(s) failed twice; see $out/results.md (Failed samples) and $logs"
fi
