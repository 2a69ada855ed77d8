// Package packet holds zero-copy views of the headers l4raw touches (virtio-net,
// Ethernet, IPv4, TCP, ICMPv4), a parser that classifies one received frame,
// and the ones'-complement checksum arithmetic used to rewrite frames in place.
//
// A header is a named byte slice with big-endian accessors, in the style of
// gVisor's pkg/tcpip/header: views never copy and never allocate, so they can
// be used on every packet. Setters that change a field covered by a checksum
// come in two forms: plain setters, and *Csum setters that also fix the
// checksum incrementally (RFC 1624, eqn. 3).
//
// Checksum state matters. A frame that the kernel marks CHECKSUM_PARTIAL
// (virtio-net NEEDS_CSUM, typical for TSO/GSO frames from a veth or a GRO'd
// frame) carries in its TCP checksum field the folded, non-complemented sum of
// the pseudo header only; the device completes it later. Such a "seed" is
// updated for address changes without complementing, and port changes must
// not touch it (ports are inside the span the device sums). A complete
// checksum is updated over both address and port words.
//
// This package imports nothing of l4raw's.
package packet
