package forward

import (
	"sync/atomic"

	"github.com/l4raw/l4raw/pkg/packet"
)

// Drop reasons beyond the parser's.
const (
	DropNoFlow       = iota // a client segment other than a SYN with no connection
	DropNoFlowReply         // a reply to no connection
	DropNoBackend           // a SYN while no backend is up (answered with a RST)
	DropTableFull           // a SYN while the table is full
	DropNATExhausted        // a SYN while every NAT port toward the backend is in use
	DropNoHop               // the next hop toward the backend is not resolved yet
	DropNoIface             // the client's interface is gone
	numDrops
)

var dropNames = [numDrops]string{"no_flow", "no_flow_reply", "no_backend", "table_full", "nat_exhausted", "no_next_hop", "no_interface"}

// DropName returns the metric label of drop reason i.
func DropName(i int) string { return dropNames[i] }

// NumDrops is the number of engine drop reasons.
const NumDrops = numDrops

// Stats are one worker's counters. Only the worker writes them; readers sum
// them over workers with Engine.Stats.
type Stats struct {
	RxFrames, RxBytes atomic.Uint64
	TxFrames, TxBytes atomic.Uint64
	Malformed         [packet.NumReasons]atomic.Uint64 // by parse reason (OK unused)
	Drops             [numDrops]atomic.Uint64
	NewConns          atomic.Uint64 // connections created
	Reopened          atomic.Uint64 // a SYN on a closed connection started a new one
	RSTSent           atomic.Uint64 // RSTs the balancer itself sent (no backend up)
	NATEarlyReuse     atomic.Uint64 // NAT ports reused during quarantine: only when nothing else was free
	NATTakeover       atomic.Uint64 // NAT ports taken from connections that had ended and lingered
	_                 [64]byte
}

// Counters is a plain copy of Stats.
type Counters struct {
	RxFrames, RxBytes, TxFrames, TxBytes uint64
	Malformed                            [packet.NumReasons]uint64
	Drops                                [numDrops]uint64
	NewConns, Reopened, RSTSent          uint64
	NATEarlyReuse, NATTakeover           uint64
}

func (c *Counters) add(s *Stats) {
	c.RxFrames += s.RxFrames.Load()
	c.RxBytes += s.RxBytes.Load()
	c.TxFrames += s.TxFrames.Load()
	c.TxBytes += s.TxBytes.Load()
	for i := range s.Malformed {
		c.Malformed[i] += s.Malformed[i].Load()
	}
	for i := range s.Drops {
		c.Drops[i] += s.Drops[i].Load()
	}
	c.NewConns += s.NewConns.Load()
	c.Reopened += s.Reopened.Load()
	c.RSTSent += s.RSTSent.Load()
	c.NATEarlyReuse += s.NATEarlyReuse.Load()
	c.NATTakeover += s.NATTakeover.Load()
}

// BackendStats are one worker's counters for one backend.
type BackendStats struct {
	Conns             atomic.Uint64 // connections scheduled to it
	PktsIn, BytesIn   atomic.Uint64 // client to backend
	PktsOut, BytesOut atomic.Uint64 // backend to client
	_                 [64 - 40]byte
}

// BackendCounters is a plain copy of BackendStats.
type BackendCounters struct {
	Conns, PktsIn, BytesIn, PktsOut, BytesOut uint64
}

func (c *BackendCounters) add(s *BackendStats) {
	c.Conns += s.Conns.Load()
	c.PktsIn += s.PktsIn.Load()
	c.BytesIn += s.BytesIn.Load()
	c.PktsOut += s.PktsOut.Load()
	c.BytesOut += s.BytesOut.Load()
}

// Stats returns the engine's counters summed over workers.
func (e *Engine) Stats() Counters {
	var c Counters
	for _, w := range e.workers {
		c.add(&w.stats)
	}
	return c
}
