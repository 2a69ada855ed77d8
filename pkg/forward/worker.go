package forward

import (
	"hash/maphash"

	"github.com/l4raw/l4raw/pkg/conntrack"
	"github.com/l4raw/l4raw/pkg/packet"
	"github.com/l4raw/l4raw/pkg/sched"
)

// Worker handles the frames of one data-path goroutine. Its counters are
// its own, so workers never write to a shared cache line on the frame path
// (except connection-table entries both directions of a flow touch).
type Worker struct {
	e      *Engine
	id     int
	stats  Stats
	tapBuf []byte // a copy of the frame being handled, while a tap is set
}

// Stats returns the worker's counters.
func (w *Worker) Stats() *Stats { return &w.stats }

// Process handles a batch of received frames in place. bufs[i][:sizes[i]]
// is a frame with its virtio-net header, received on interface ifs[i]. On
// return, sizes[i] is the length of the frame to send from bufs[i] (0 drops
// it) and ifs[i] the interface to send it on.
func (w *Worker) Process(bufs [][]byte, sizes []int, ifs []int) {
	now := w.e.table.Now()
	st := w.e.st.Load()
	bs := *w.e.backends.Load()
	var rxBytes, txFrames, txBytes uint64
	tap := w.e.tap.Load()
	for i := range sizes {
		if sizes[i] == 0 { // truncated on receive, counted by the socket
			continue
		}
		rxBytes += uint64(sizes[i])
		var in []byte
		inIf := ifs[i]
		if tap != nil && sizes[i] > packet.VnetHdrLen {
			// The frame is rewritten in place: keep what arrived.
			w.tapBuf = append(w.tapBuf[:0], bufs[i][packet.VnetHdrLen:sizes[i]]...)
			in = w.tapBuf
		}
		n := w.frame(st, bs, bufs[i][:sizes[i]], &ifs[i], now)
		sizes[i] = n
		if in != nil {
			var out []byte
			if n > packet.VnetHdrLen {
				out = bufs[i][packet.VnetHdrLen:n]
			}
			if tap.t.Match(in) || (out != nil && tap.t.Match(out)) {
				tap.t.Capture(true, inIf, in)
				if out != nil {
					tap.t.Capture(false, ifs[i], out)
				}
			}
		}
		if n > 0 {
			txFrames++
			txBytes += uint64(n)
		}
	}
	w.stats.RxFrames.Add(uint64(len(sizes)))
	w.stats.RxBytes.Add(rxBytes)
	w.stats.TxFrames.Add(txFrames)
	w.stats.TxBytes.Add(txBytes)
}

func (w *Worker) frame(st *state, bs []*Backend, b []byte, ifindex *int, now uint32) int {
	var f packet.Frame
	if r := f.Parse(b, true); r != packet.OK {
		w.stats.Malformed[r].Add(1)
		return 0
	}
	if svc := st.services[svcKey(f.IP.Dst(), f.TCP.DstPort())]; svc != nil {
		return w.fromClient(st, bs, svc, &f, ifindex, now)
	}
	return w.fromBackend(st, bs, &f, ifindex, now)
}

func tupleOf(f *packet.Frame) conntrack.Tuple {
	return conntrack.Tuple{
		Src: conntrack.AddrFrom4(f.IP.Src()), Dst: conntrack.AddrFrom4(f.IP.Dst()),
		SrcPort: f.TCP.SrcPort(), DstPort: f.TCP.DstPort(), Proto: packet.ProtocolTCP,
	}
}

const synMask = packet.TCPFlagSYN | packet.TCPFlagACK | packet.TCPFlagRST | packet.TCPFlagFIN

func (w *Worker) fromClient(st *state, bs []*Backend, svc *Service, f *packet.Frame, ifindex *int, now uint32) int {
	key := tupleOf(f)
	fl := f.TCP.Flags()
	var flow conntrack.Flow
	switch w.e.table.Track(&key, conntrack.Orig, fl, now, &flow) {
	case conntrack.Hit:
		if flow.Reset {
			return w.reset(f)
		}
		if int(flow.Backend) < len(bs) {
			w.transition(bs[flow.Backend], &flow, fl, conntrack.Orig, now)
		}
	case conntrack.Reopened:
		w.stats.Reopened.Add(1)
		fallthrough
	default:
		// Only a bare SYN opens a connection. Anything else without one is
		// a leftover (after an expiry or a restart) and is dropped, as
		// IPVS does.
		if fl&synMask != packet.TCPFlagSYN {
			w.stats.Drops[DropNoFlow].Add(1)
			return 0
		}
		if n, ok := w.open(st, bs, svc, f, &key, *ifindex, now, &flow); !ok {
			return n
		}
	}
	if int(flow.Backend) >= len(bs) {
		w.stats.Drops[DropNoFlow].Add(1)
		return 0
	}
	b := bs[flow.Backend]
	h := b.hop.Load()
	if h == nil {
		w.stats.Drops[DropNoHop].Add(1)
		if w.e.cfg.Kick != nil {
			w.e.cfg.Kick(b.Addr.Addr())
		}
		return 0
	}
	f.Eth.SetDst(h.Dst)
	f.Eth.SetSrc(h.Src)
	f.Rewrite(packet.Tuple4{Src: flow.Reply.Dst.As4(), Dst: flow.Reply.Src.As4(), SrcPort: flow.Reply.DstPort, DstPort: flow.Reply.SrcPort})
	if flow.Timestamps {
		if off, ok := f.TCP.TimestampOffset(); ok {
			f.TCP.SetUint32Csum(off, f.TCP.TSval(off)+flow.TSOff, f.Partial())
		}
	}
	c := &b.stats[w.id]
	c.PktsIn.Add(1)
	c.BytesIn.Add(uint64(len(f.IP)))
	*ifindex = h.Ifindex
	return f.Len()
}

// open schedules a new connection for the SYN in f. It returns ok with flow
// filled in, or the length of a reply to send back on the arrival interface
// (a RST when no backend is up), or 0 to drop the SYN.
func (w *Worker) open(st *state, bs []*Backend, svc *Service, f *packet.Frame, key *conntrack.Tuple, ifindex int, now uint32, flow *conntrack.Flow) (int, bool) {
	box := svc.sched.Load()
	clientHash := maphash.Comparable(w.e.seed, key.Src)
	id, ok := box.s.Pick(sched.Key{Flow: maphash.Comparable(w.e.seed, *key), Client: clientHash})
	if !ok || int(id) >= len(bs) {
		// Answer at once, as a closed port would: the client fails fast
		// instead of retrying into the void, and the worker goes back to
		// sleep.
		w.stats.Drops[DropNoBackend].Add(1)
		w.stats.RSTSent.Add(1)
		return f.MakeRSTReply(w.e.cfg.RSTTTL), false
	}
	b := bs[id]
	slot := uint8(0)
	for i := range st.ifaces {
		if st.ifaces[i].Index == ifindex {
			slot = uint8(i)
			break
		}
	}
	*flow = conntrack.Flow{Orig: *key, Backend: id, Service: svc.ID, ClientMAC: f.Eth.Src(), IfSlot: slot}
	flow.Reply = conntrack.Tuple{Src: conntrack.AddrFrom4(b.addr4), SrcPort: b.Addr.Port(), Proto: packet.ProtocolTCP}
	pool := -1
	if svc.Mode == DNAT {
		flow.Reply.Dst, flow.Reply.DstPort = key.Src, key.SrcPort
	} else {
		// The client's address picks its first SNAT address, so a client
		// keeps returning to the pool where its own recently used ports
		// can be reused at once.
		n := len(b.pools)
		first := int(clientHash % uint64(n))
		for j := 0; j < n && pool < 0; j++ {
			k := (first + j) % n
			if port, early, err := b.pools[k].Get(key.Src, now); err == nil {
				if early {
					w.stats.NATEarlyReuse.Add(1)
				}
				pool = k
				flow.Reply.Dst, flow.Reply.DstPort = b.snat[k], port
			}
		}
		// Every port toward this backend is held. Connections that have
		// ended (both FINs or a RST) but linger in the table hold some:
		// end one early and take its port.
		// Two workers may pick the same lingering port at once; the loser
		// tries the next one.
		for try := 0; try < 4*n && pool < 0; try++ {
			k := (first + try) % n
			p := b.pools[k]
			lp, early, ok := p.Lingering(key.Src, now)
			if !ok {
				continue
			}
			old := conntrack.Tuple{Src: flow.Reply.Src, Dst: b.snat[k], SrcPort: flow.Reply.SrcPort, DstPort: lp, Proto: packet.ProtocolTCP}
			if !w.e.table.Delete(&old, conntrack.Reply) {
				p.Passed(lp)
			}
			if port, early2, err := p.Get(key.Src, now); err == nil {
				w.stats.NATTakeover.Add(1)
				if early || early2 {
					w.stats.NATEarlyReuse.Add(1)
				}
				pool = k
				flow.Reply.Dst, flow.Reply.DstPort = b.snat[k], port
			}
		}
		if pool < 0 {
			w.stats.Drops[DropNATExhausted].Add(1)
			return 0, false
		}
		// NAT ports are reused, and a backend in TIME_WAIT for a port
		// accepts a new SYN only if its timestamp is newer than the old
		// connection's last one (PAWS). Clients start their timestamps at a
		// random offset per connection (Linux does), so l4raw moves them onto
		// a clock of its own, wall-clock milliseconds, which no client within
		// RFC 7323 (at most a tick a millisecond) outruns; the pool makes
		// each connection on a port start above where the previous one
		// could have ended.
		if off, ok := f.TCP.TimestampOffset(); ok {
			start := b.pools[pool].StartTS(flow.Reply.DstPort, w.e.tsClock()+tsHeadroom, now)
			flow.Timestamps = true
			flow.TSOff = start - f.TCP.TSval(off)
		}
	}
	port := flow.Reply.DstPort
	switch w.e.table.Insert(flow, now) {
	case conntrack.Inserted:
		b.active.Add(1)
		b.stats[w.id].Conns.Add(1)
		w.stats.NewConns.Add(1)
		return 0, true
	case conntrack.Exists:
		// A copy of this SYN won the race: follow its entry.
		if pool >= 0 {
			b.pools[pool].Put(port, key.Src, now, false)
		}
		return 0, true
	case conntrack.Full:
		w.stats.Drops[DropTableFull].Add(1)
	default: // Collision: the port is held by an entry the pool does not know of
		w.stats.Drops[DropNATExhausted].Add(1)
	}
	if pool >= 0 {
		b.pools[pool].Put(port, key.Src, now, false)
	}
	return 0, false
}

func (w *Worker) fromBackend(st *state, bs []*Backend, f *packet.Frame, ifindex *int, now uint32) int {
	key := tupleOf(f)
	var flow conntrack.Flow
	fl := f.TCP.Flags()
	if w.e.table.Track(&key, conntrack.Reply, fl, now, &flow) != conntrack.Hit {
		w.stats.Drops[DropNoFlowReply].Add(1)
		return 0
	}
	if flow.Reset {
		return w.reset(f)
	}
	if int(flow.Backend) < len(bs) {
		w.transition(bs[flow.Backend], &flow, fl, conntrack.Reply, now)
	}
	if int(flow.IfSlot) >= len(st.ifaces) {
		w.stats.Drops[DropNoIface].Add(1)
		return 0
	}
	ifc := &st.ifaces[flow.IfSlot]
	f.Eth.SetDst(flow.ClientMAC)
	f.Eth.SetSrc(ifc.MAC)
	f.Rewrite(packet.Tuple4{Src: flow.Orig.Dst.As4(), Dst: flow.Orig.Src.As4(), SrcPort: flow.Orig.DstPort, DstPort: flow.Orig.SrcPort})
	if flow.Timestamps {
		if off, ok := f.TCP.TimestampOffset(); ok {
			f.TCP.SetUint32Csum(off+4, f.TCP.TSecr(off)-flow.TSOff, f.Partial())
		}
	}
	if int(flow.Backend) < len(bs) {
		c := &bs[flow.Backend].stats[w.id]
		c.PktsOut.Add(1)
		c.BytesOut.Add(uint64(len(f.IP)))
	}
	*ifindex = ifc.Index
	return f.Len()
}

// reset answers a segment of a connection marked for reset with a RST back
// to its sender (never a RST to a RST).
func (w *Worker) reset(f *packet.Frame) int {
	if f.TCP.Flags()&packet.TCPFlagRST != 0 {
		return 0
	}
	w.stats.RSTSent.Add(1)
	return f.MakeRSTReply(w.e.cfg.RSTTTL)
}

// transition records what a state change of a connection means: the
// outcome of its handshake, for passive health, and its end, which lets its
// NAT port be taken over.
func (w *Worker) transition(b *Backend, flow *conntrack.Flow, fl uint8, d conntrack.Dir, now uint32) {
	switch {
	case flow.Prev == conntrack.SynSent && d == conntrack.Orig && fl&packet.TCPFlagSYN != 0:
		b.synRetried.Add(1)
	case flow.Prev == conntrack.SynSent && flow.State == conntrack.SynRecv:
		b.synAnswered.Add(1)
	case (flow.Prev == conntrack.SynSent || flow.Prev == conntrack.SynRecv) && flow.State == conntrack.Close && d == conntrack.Reply:
		b.synRefused.Add(1)
	}
	if est, was := flow.State == conntrack.Established, flow.Prev == conntrack.Established; est != was {
		if est {
			b.established.Add(1)
		} else {
			b.established.Add(-1)
		}
	}
	if flow.State.Closing() && !flow.Prev.Closing() {
		for i, a := range b.snat {
			if a == flow.Reply.Dst {
				b.pools[i].Linger(flow.Reply.DstPort, flow.Orig.Src, flow.BackendClosedFirst && !flow.Timestamps, now)
				break
			}
		}
	}
}

// tsHeadroom is added to the timestamp clock for a new connection, so the
// first segments stay above the clock although the client's and l4raw's
// millisecond ticks are out of phase.
const tsHeadroom = 16
