// Package forward is the balancer's per-frame logic: it classifies a parsed
// frame as a client's segment to a service or a backend's reply, finds or
// creates its connection, rewrites it in place and says where to send it.
//
// It knows no sockets: the data path hands it batches of frames and sends
// what it returns (see package datapath). The control plane changes what it
// forwards through Apply, SetHop and SetHealth; those build a new immutable
// state that packets read through an atomic pointer, so the frame path never
// takes a control-plane lock.
//
// Per frame, the work is: parse (bounds-checked views), one map lookup for
// the service, one connection-table lookup (a read lock on one stripe), the
// NAT rewrite with incremental checksums, and per-worker counters. A new
// connection adds a scheduler pick, a NAT port and a table insert. Nothing
// allocates.
package forward
