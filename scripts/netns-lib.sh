# shellcheck shell=bash
# netns-lib.sh: helpers to build test topologies from network namespaces.
# Source it from bash; every function is prefixed nl_. Addresses are the
# caller's choice: keep them in 198.18.0.0/15 (RFC 2544 benchmarking range).
#
# A topology is a switch namespace holding a bridge, and hosts joined to it
# by veth pairs created inside the namespaces: the root namespace's network
# configuration is never touched. The bridge lives in a namespace of its own
# because br_netfilter passes bridged frames through the netfilter hooks of
# the bridge's namespace; there, they must not meet a balancer's rules.

# nl_die MESSAGE: print to stderr and exit 1.
nl_die() {
	echo "error: $*" >&2
	exit 1
}

# nl_require_root: exit unless running as root.
nl_require_root() {
	[[ ${EUID:-$(id -u)} -eq 0 ]] ||
		nl_die "this needs root (network namespaces, CAP_NET_ADMIN, CAP_NET_RAW): run it with sudo"
	command -v ip >/dev/null || nl_die "ip (iproute2) not found"
	command -v sysctl >/dev/null || nl_die "sysctl (procps) not found"
}

# nl_cc_allowed ALG: true if a namespace may default to ALG. Only the algorithms
# in the host-wide net.ipv4.tcp_allowed_congestion_control may be a namespace
# default; processes with CAP_NET_ADMIN can still pick any per socket.
nl_cc_allowed() {
	[[ " $(cat /proc/sys/net/ipv4/tcp_allowed_congestion_control 2>/dev/null) " == *" $1 "* ]]
}

# nl_ns_add NAME: a namespace with lo up, IPv6 off (no DAD or router
# solicitation noise) and TCP congestion control cubic if the host allows it.
nl_ns_add() {
	ip netns add "$1"
	ip -n "$1" link set dev lo up
	local cc=()
	nl_cc_allowed cubic && cc=(net.ipv4.tcp_congestion_control=cubic)
	ip netns exec "$1" sysctl -q -e -w net.ipv6.conf.all.disable_ipv6=1 \
		net.ipv6.conf.default.disable_ipv6=1 "${cc[@]}"
}

# nl_switch NS BRIDGE: a bridge in namespace NS that only switches
# (br_netfilter off in that namespace).
nl_switch() {
	ip -n "$1" link add "$2" type bridge
	ip -n "$1" link set "$2" up
	ip netns exec "$1" sysctl -q -e -w net.bridge.bridge-nf-call-iptables=0 \
		net.bridge.bridge-nf-call-ip6tables=0 net.bridge.bridge-nf-call-arptables=0
}

# nl_mac IPV4: a locally administered MAC derived from the address
# (02:00:c6:12:00:0a for 198.18.0.10), so captures read easily.
nl_mac() {
	local a b c d
	IFS=. read -r a b c d <<<"$1"
	printf '02:00:%02x:%02x:%02x:%02x' "$a" "$b" "$c" "$d"
}

# nl_plug HOST_NS IFNAME IP/LEN SWITCH_NS BRIDGE PORT: a veth pair from
# HOST_NS (IFNAME, address IP/LEN, up) to port PORT of BRIDGE. Offloads keep
# the veth defaults (TSO, GSO, checksum offload on).
nl_plug() {
	local host=$1 ifname=$2 cidr=$3 sw=$4 br=$5 port=$6
	ip -n "$host" link add "$ifname" address "$(nl_mac "${cidr%/*}")" type veth peer name "$port" netns "$sw"
	ip -n "$host" addr add "$cidr" dev "$ifname"
	ip -n "$host" link set "$ifname" up
	ip -n "$sw" link set "$port" master "$br" up
}

# nl_cleanup PREFIX: kill every process inside, then delete, each namespace
# whose name starts with PREFIX-.
nl_cleanup() {
	local ns pid
	for ns in $(ip netns list 2>/dev/null | awk -v p="$1-" 'index($1, p) == 1 { print $1 }'); do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			kill -KILL "$pid" 2>/dev/null || true
		done
		ip netns del "$ns" 2>/dev/null || true
	done
}

# nl_wait_connect NS ADDR:PORT L4ECHO TRIES: poll a TCP connect from NS every
# 0.2 s, at most TRIES times; true once it succeeds.
nl_wait_connect() {
	local i
	for ((i = 0; i < $4; i++)); do
		if ip netns exec "$1" "$3" connect --addr "$2" --timeout 200ms >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.2
	done
	return 1
}
