#!/usr/bin/env bash
# setup.sh - keep the host kernel out of l4raw's traffic with iptables, for hosts
# that run l4raw --no-guard (without it, l4raw installs the same drops itself as
# the nftables table "inet l4raw").
#
# Why: l4raw receives and sends raw frames on AF_PACKET. If the VIP is a local
# address, the kernel answers a client's SYN with RST before l4raw's forward
# arrives, and it RSTs backend replies to the SNAT address on NAT ports, because
# it has no socket for them. AF_PACKET taps frames before IP input, so a drop in
# the raw table's PREROUTING chain hides them from the kernel while l4raw still
# receives everything: no RSTs, and no conntrack entries either (raw runs before
# conntrack). Never drop RSTs globally instead: the kernel would still build one
# per forwarded segment, and the backends' own RSTs would be lost with them.
#
# Rules, all in -t raw PREROUTING, all tagged with the comment "l4raw" (the NAT
# rule "l4raw-reserved" when setup.sh made its port reservation):
#   --vip IP:PORT[,PORT...]   -d VIP -p tcp --dport PORT -j DROP
#                             the VIP's service ports: the kernel must not answer.
#   --snat-ip IP                 -d SNAT -p tcp --dport LO:HI -j DROP
#   --nat-ports LO-HI         replies from backends to l4raw's source ports. The
#                             range is also reserved in
#                             net.ipv4.ip_local_reserved_ports, so the kernel never
#                             gives one of these ports to the host's own
#                             connections (the drop would hang them). Default: the
#                             ports above net.ipv4.ip_local_port_range
#                             (61000-65535 with the kernel default 32768-60999).
#   --dnat-backend IP:PORT    -s IP -p tcp --sport PORT
#                             -m addrtype ! --dst-type LOCAL -j DROP
#                             replies of a backend in DNAT mode, addressed to the
#                             client: l4raw rewrites them, the kernel must not
#                             forward them un-NATed. Replies to the host's own
#                             addresses (health checks) still pass.
#
# add is idempotent (iptables -C before -A). remove deletes the rules its
# arguments describe, or every rule tagged "l4raw" when given none, and takes the
# NAT range out of the reservation if add put it there, keeping everyone else's
# entries. status prints our rules with their counters and the reservation.
#
# Exit status: 0 done / status: present; 1 status: absent; 2 bad arguments;
# 3 not root, a tool is missing, or iptables or sysctl failed.
# iptables rules and these sysctls belong to a network namespace: run inside the
# namespace l4raw runs in (ip netns exec NAME, or nsenter --net=/proc/PID/ns/net).
set -euo pipefail

readonly prog=setup.sh
readonly tag=l4raw
readonly reserved_key=net.ipv4.ip_local_reserved_ports
readonly range_key=net.ipv4.ip_local_port_range
# The smallest default NAT range, as in l4raw itself (pkg/firewall MinNATPorts):
# 1024 ports sustain about 17 new connections per second per backend when a port
# rests for TIME_WAIT (60 s) before reuse.
readonly min_nat_ports=1024

usage() {
	cat <<EOF
usage: $prog add|remove|status [--vip IP:PORT[,PORT...]]... [--snat-ip IP [--nat-ports LO-HI]]
                               [--dnat-backend IP:PORT]...
  add     install the raw PREROUTING drops and reserve the NAT ports (idempotent)
  remove  delete them again (with no options: every rule tagged "$tag")
  status  show our rules with counters and the reservation; exit 0 if present, 1 if not
EOF
}

bad() { # one line naming the bad value, exit 2
	echo "$prog: $*; see $prog --help" >&2
	exit 2
}

fail() {
	echo "$prog: $*" >&2
	exit 3
}

# ipv4 ADDR: dotted quad, no leading zeros (inet_aton would read 010 as octal).
is_ipv4() {
	local re='^(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})$'
	[[ $1 =~ $re ]] || return 1
	local i
	for i in 1 2 3 4; do
		((BASH_REMATCH[i] <= 255)) || return 1
	done
}

is_port() {
	[[ $1 =~ ^[1-9][0-9]{0,4}$ ]] && (($1 <= 65535))
}

# --- arguments -------------------------------------------------------------

action=
vips=()     # "IP PORT"
backends=() # "IP PORT"
snat=
nat_lo=
nat_hi=

[[ $# -gt 0 ]] || {
	usage >&2
	exit 2
}
case $1 in
-h | --help)
	usage
	exit 0
	;;
add | remove | status) action=$1 ;;
*) bad "unknown action \"$1\" (want add, remove or status)" ;;
esac
shift

while [[ $# -gt 0 ]]; do
	opt=$1 val=
	case $opt in
	--*=*) val=${opt#*=} opt=${opt%%=*} ;;
	--vip | --snat-ip | --nat-ports | --dnat-backend)
		[[ $# -ge 2 ]] || bad "$opt needs a value"
		val=$2
		shift
		;;
	-h | --help)
		usage
		exit 0
		;;
	*) bad "unknown option \"$opt\"" ;;
	esac
	shift
	case $opt in
	--vip)
		ip=${val%%:*} ports=${val#*:}
		[[ $val == *:* && -n $ports ]] || bad "--vip \"$val\": want IP:PORT[,PORT...]"
		is_ipv4 "$ip" || bad "--vip \"$val\": bad IPv4 address \"$ip\""
		IFS=, read -ra list <<<"$ports"
		[[ $ports != *, && ${#list[@]} -gt 0 ]] || bad "--vip \"$val\": want IP:PORT[,PORT...]"
		for p in "${list[@]}"; do
			is_port "$p" || bad "--vip \"$val\": bad port \"$p\" (want 1-65535)"
			vips+=("$ip $p")
		done
		;;
	--snat-ip)
		[[ -z $snat ]] || bad "--snat-ip \"$val\": given twice"
		is_ipv4 "$val" || bad "--snat-ip \"$val\": bad IPv4 address"
		snat=$val
		;;
	--nat-ports)
		[[ -z $nat_lo ]] || bad "--nat-ports \"$val\": given twice"
		lo=${val%%-*} hi=${val#*-}
		if [[ $val != *-* ]] || ! is_port "$lo" || ! is_port "$hi"; then
			bad "--nat-ports \"$val\": want LO-HI, ports 1-65535"
		fi
		((lo < hi)) || bad "--nat-ports \"$val\": low end must be below high end"
		nat_lo=$lo nat_hi=$hi
		;;
	--dnat-backend)
		ip=${val%:*} p=${val##*:}
		[[ $val == *:* ]] || bad "--dnat-backend \"$val\": want IP:PORT"
		is_ipv4 "$ip" || bad "--dnat-backend \"$val\": bad IPv4 address \"$ip\""
		is_port "$p" || bad "--dnat-backend \"$val\": bad port \"$p\" (want 1-65535)"
		backends+=("$ip $p")
		;;
	esac
done

[[ -z $nat_lo || -n $snat ]] || bad "--nat-ports \"$nat_lo-$nat_hi\": needs --snat-ip"
have_args=0
if ((${#vips[@]} + ${#backends[@]} > 0)) || [[ -n $snat ]]; then
	have_args=1
fi
[[ $action != add || $have_args == 1 ]] || bad "add needs --vip, --snat-ip or --dnat-backend"

# --- environment -----------------------------------------------------------

[[ $(id -u) == 0 ]] || fail "needs root (CAP_NET_ADMIN) to change iptables rules and $reserved_key"
for tool in iptables iptables-save sysctl; do
	command -v "$tool" >/dev/null || fail "$tool not found (Debian: apt-get install iptables procps)"
done

ipt() { # iptables -t raw ARGS, failing with exit 3
	local out
	out=$(iptables -w 5 -t raw "$@" 2>&1) || fail "iptables -t raw $*: ${out//$'\n'/ }"
}

has_rule() { # iptables -C: 0 present, 1 absent, exit 3 on anything else
	local rc=0 out
	out=$(iptables -w 5 -t raw -C PREROUTING "$@" 2>&1) || rc=$?
	case $rc in
	0) return 0 ;;
	1) return 1 ;;
	*) fail "iptables -t raw -C PREROUTING $*: ${out//$'\n'/ }" ;;
	esac
}

sysctl_get() {
	sysctl -n "$1" 2>/dev/null || fail "cannot read $1"
}

sysctl_set() {
	local out
	out=$(sysctl -q -w "$1=$2" 2>&1) || fail "sysctl -w $1=$2: ${out//$'\n'/ }"
}

# Our rules' iptables-save lines ("[packets:bytes] -A PREROUTING ...").
our_lines() {
	local out
	out=$(iptables-save -c -t raw 2>&1) || fail "iptables-save -t raw: ${out//$'\n'/ }"
	grep -E -- "-A PREROUTING .*--comment $tag(-reserved)? " <<<"$out" || true
}

# --- port ranges -----------------------------------------------------------

# reserved_entries: the reservation as "LO HI" lines.
reserved_entries() {
	local v e
	v=$(sysctl_get "$reserved_key")
	IFS=, read -ra entries <<<"${v//[[:space:]]/}"
	for e in "${entries[@]}"; do
		[[ -n $e ]] || continue
		if [[ $e == *-* ]]; then
			echo "${e%-*} ${e#*-}"
		else
			echo "$e $e"
		fi
	done
}

# covered LO HI: is every port of LO-HI reserved?
covered() {
	local next=$1 hi=$2 a b changed=1
	# Each pass either extends next or stops, so as many passes as entries suffice.
	while ((changed && next <= hi)); do
		changed=0
		while read -r a b; do
			[[ -n $a ]] || continue
			if ((a <= next && b >= next)); then
				next=$((b + 1))
				changed=1
			fi
		done < <(reserved_entries)
	done
	((next > hi))
}

reserve() { # reserve LO HI, appending to what is there
	local lo=$1 hi=$2 cur
	covered "$lo" "$hi" && return 0
	cur=$(sysctl_get "$reserved_key")
	cur=${cur//[[:space:]]/}
	sysctl_set "$reserved_key" "${cur:+$cur,}$lo-$hi"
}

unreserve() { # take LO-HI out of the reservation, keep every other port
	local lo=$1 hi=$2 a b out=()
	while read -r a b; do
		[[ -n $a ]] || continue
		if ((b < lo || a > hi)); then
			out+=("$(range "$a" "$b")")
			continue
		fi
		if ((a < lo)); then
			out+=("$(range "$a" $((lo - 1)))")
		fi
		if ((b > hi)); then
			out+=("$(range $((hi + 1)) "$b")")
		fi
	done < <(reserved_entries)
	local IFS=,
	sysctl_set "$reserved_key" "${out[*]}"
}

range() {
	if (($1 == $2)); then echo "$1"; else echo "$1-$2"; fi
}

# default_nat: the ports above the ephemeral range, where reserved ports at its
# top count as free (the kernel never hands them out), as l4raw computes it.
default_nat() {
	local eph lo hi top a b moved
	eph=$(sysctl_get "$range_key")
	read -r lo hi <<<"$eph"
	top=$hi
	moved=1
	while ((moved && top >= lo)); do
		moved=0
		while read -r a b; do
			[[ -n $a ]] || continue
			if ((a <= top && top <= b)); then
				top=$((a - 1))
				moved=1
			fi
		done < <(reserved_entries)
	done
	if ((top < lo - 1)); then
		top=$((lo - 1))
	fi
	if ((65535 - top < min_nat_ports)); then
		fail "only $((65535 - top)) ports above the kernel's ephemeral ports $lo-$hi (need $min_nat_ports): pass --nat-ports LO-HI"
	fi
	nat_lo=$((top + 1)) nat_hi=65535
}

# --- the rules -------------------------------------------------------------

vip_rules=()     # iptables rule specs without the comment and target
backend_rules=() # same
nat_rule=        # same, empty without --snat-ip
build_rules() {
	local v ip p
	for v in "${vips[@]}"; do
		read -r ip p <<<"$v"
		vip_rules+=("-d $ip -p tcp --dport $p")
	done
	if [[ -n $snat ]]; then
		[[ -n $nat_lo ]] || default_nat
		nat_rule="-d $snat -p tcp --dport $nat_lo:$nat_hi"
	fi
	for v in "${backends[@]}"; do
		read -r ip p <<<"$v"
		backend_rules+=("-s $ip -p tcp --sport $p -m addrtype ! --dst-type LOCAL")
	done
}

# tagged SPEC TAG: the full rule spec.
tagged() { echo "$1 -m comment --comment $2 -j DROP"; }

# A NAT rule tagged $owned records that setup.sh made the port reservation, so
# remove releases it only then: ports an operator had reserved already stay so.
readonly owned=$tag-reserved

# remove_rule SPEC: delete every copy (at most 100); removed counts them.
removed=0
remove_rule() {
	removed=0
	for _ in {1..100}; do
		# shellcheck disable=SC2086 # rule specs are validated words
		has_rule $1 || break
		# shellcheck disable=SC2086
		ipt -D PREROUTING $1
		removed=$((removed + 1))
	done
}

# nat_ranges: the "LO HI" of the NAT rules (the only kind with a destination
# port range) among iptables-save lines.
nat_ranges() {
	sed -nE 's/.* -d [0-9.]+\/32 -p tcp -m tcp --dport ([0-9]+):([0-9]+) .*/\1 \2/p'
}

do_add() {
	local r n=0
	build_rules
	for r in "${vip_rules[@]}"; do
		# shellcheck disable=SC2046 # the rule spec is validated words
		has_rule $(tagged "$r" $tag) || ipt -A PREROUTING $(tagged "$r" $tag)
		n=$((n + 1))
	done
	if [[ -n $nat_rule ]]; then
		# shellcheck disable=SC2046
		if has_rule $(tagged "$nat_rule" $owned); then
			reserve "$nat_lo" "$nat_hi" # ours: make sure it still holds
		elif has_rule $(tagged "$nat_rule" $tag); then
			: # reserved by someone else when the rule was added
		elif covered "$nat_lo" "$nat_hi"; then
			ipt -A PREROUTING $(tagged "$nat_rule" $tag)
		else
			# Reserve first: with the drop in place and the ports still free, a
			# host connection could get one of them and hang.
			reserve "$nat_lo" "$nat_hi"
			ipt -A PREROUTING $(tagged "$nat_rule" $owned)
		fi
		n=$((n + 1))
	fi
	for r in "${backend_rules[@]}"; do
		# shellcheck disable=SC2046
		has_rule $(tagged "$r" $tag) || ipt -A PREROUTING $(tagged "$r" $tag)
		n=$((n + 1))
	done
	echo "$prog: $n rules in raw PREROUTING${snat:+, ports $nat_lo-$nat_hi reserved}"
}

do_remove() {
	local r line n=0 ranges='' a b
	if ((have_args)); then
		build_rules
		for r in "${vip_rules[@]}" "${backend_rules[@]}"; do
			remove_rule "$(tagged "$r" $tag)"
			n=$((n + removed))
		done
		if [[ -n $nat_rule ]]; then
			remove_rule "$(tagged "$nat_rule" $tag)"
			n=$((n + removed))
			remove_rule "$(tagged "$nat_rule" $owned)"
			n=$((n + removed))
			if ((removed > 0)); then
				ranges="$nat_lo $nat_hi"
			fi
		fi
	else
		local lines
		lines=$(our_lines)
		ranges=$(grep -F -- "--comment $owned" <<<"$lines" | nat_ranges || true)
		while read -r line; do
			[[ -n $line ]] || continue
			line=${line#\[*\] } # drop the counters
			# shellcheck disable=SC2086 # iptables-save prints our rules as plain words
			ipt -D ${line#-A } # -D PREROUTING <spec>
			n=$((n + 1))
		done <<<"$lines"
	fi
	while read -r a b; do
		if [[ -n $a ]]; then
			unreserve "$a" "$b"
		fi
	done <<<"$ranges"
	echo "$prog: $n rules removed${ranges:+, NAT ports released}"
}

do_status() {
	local lines r ok=1
	lines=$(our_lines)
	echo "rules tagged \"$tag\" in raw PREROUTING ([packets:bytes] rule):"
	if [[ -n $lines ]]; then
		echo "  ${lines//$'\n'/$'\n'  }"
	else
		echo "  none"
		ok=0
	fi
	echo "$reserved_key = $(sysctl_get "$reserved_key")"
	if ((have_args)); then
		build_rules
		for r in "${vip_rules[@]}" "${backend_rules[@]}"; do
			# shellcheck disable=SC2046
			if ! has_rule $(tagged "$r" $tag); then
				echo "missing: -A PREROUTING $(tagged "$r" $tag)"
				ok=0
			fi
		done
		if [[ -n $nat_rule ]]; then
			# shellcheck disable=SC2046
			if ! has_rule $(tagged "$nat_rule" $tag) && ! has_rule $(tagged "$nat_rule" $owned); then
				echo "missing: -A PREROUTING $(tagged "$nat_rule" $tag)"
				ok=0
			fi
			if ! covered "$nat_lo" "$nat_hi"; then
				echo "missing: reservation of ports $nat_lo-$nat_hi in $reserved_key"
				ok=0
			fi
		fi
	fi
	((ok)) || exit 1
}

case $action in
add) do_add ;;
remove) do_remove ;;
status) do_status ;;
esac
