// Package arp lets l4raw claim a free LAN address as its VIP without the
// host owning it: l4raw itself answers ARP (RFC 826) for the address on one
// interface, like keepalived or MetalLB in layer-2 mode.
//
// Why not `ip addr add`: an address the kernel owns is one the kernel answers
// for, with RSTs before the balancer's forward arrives (see the data-path
// notes); an address nobody on the host owns needs only the raw-prerouting
// guard and these ARP answers.
//
// A claim follows RFC 5227 (IPv4 Address Conflict Detection):
//
//   - Probe: ARP requests with sender address 0.0.0.0 ask whether anyone
//     already uses the address; an answer, or another host probing for the
//     same address, is a *ConflictError naming that host's MAC.
//   - Announce: gratuitous ARP requests (sender = target = the address)
//     update the neighbour caches of hosts that remember an older owner.
//   - Serve: every ARP request for the address is answered with the
//     interface's MAC until the context ends; a host that claims the address
//     as well is logged once and the address is defended with at most one
//     announcement per DEFEND_INTERVAL (section 2.4).
//
// Frames come from an AF_PACKET socket bound to ETH_P_ARP with a classic BPF
// filter that passes only ARP for the claimed address (Listen), or from any
// Conn, so tests pass a fake (package arptest).
package arp
