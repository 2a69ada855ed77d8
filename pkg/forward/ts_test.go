package forward

import (
	"testing"
	"time"

	"github.com/l4raw/l4raw/pkg/nat"
	"github.com/l4raw/l4raw/pkg/packet"
)

func tsOf(t *testing.T, f *packet.Frame) (uint32, uint32) {
	t.Helper()
	off, ok := f.TCP.TimestampOffset()
	if !ok {
		t.Fatal("no timestamp option")
	}
	return f.TCP.TSval(off), f.TCP.TSecr(off)
}

// TestTimestampRewrite: full NAT moves the client's timestamps onto l4raw's
// clock toward the backend and back on the way to the client, so a NAT
// port's next connection starts above where the previous one ended, whatever
// random offset each client connection picked.
func TestTimestampRewrite(t *testing.T) {
	clock := uint32(1_000_000)
	e := New(Config{MaxConns: 100, Timeouts: timeouts, Workers: 1, TSClock: func() uint32 { return clock }})
	s := setup(nil, false, nat.PortRange{Lo: 61000, Hi: 61000}) // one NAT port: every connection reuses it
	s.Services[0].Backends = s.Services[0].Backends[:1]
	if err := e.Apply(s); err != nil {
		t.Fatal(err)
	}
	e.SetHop(backends[0].Addr(), &Hop{Ifindex: ifindex, Src: lbMAC, Dst: beMAC})
	e.SetHealth(backends[0], true)
	w := e.Worker(0)
	var lastToBackend uint32
	for i, clientTS := range []uint32{4_000_000_000, 17, 2_000_000_000} { // random per-connection offsets
		cp := uint16(100 + i)
		cli := ap(client, cp)
		out, _ := run(t, w, frame(t, seg{src: cli, dst: ap(vip, 80), srcMAC: clientMAC, syn: true, ts: true, tsval: clientTS}))
		if out == nil {
			t.Fatalf("connection %d: SYN dropped: %+v", i, e.Stats())
		}
		tv, _ := tsOf(t, out)
		if i > 0 && int32(tv-lastToBackend) <= 0 {
			t.Fatalf("connection %d starts at TSval %d, not above the previous connection's last %d", i, tv, lastToBackend)
		}
		off := tv - clientTS
		natp := ap(snat, out.Tuple().SrcPort)
		// The backend echoes our TSval; the client gets its own back.
		back, _ := run(t, w, frame(t, seg{src: backends[0], dst: natp, srcMAC: beMAC, syn: true, ack: true, ts: true, tsval: 555, tsecr: tv}))
		if v, ecr := tsOf(t, back); ecr != clientTS || v != 555 {
			t.Fatalf("to the client: TSval %d TSecr %d, want 555 and %d", v, ecr, clientTS)
		}
		// Data, then the close (the backend first). The test runs within a
		// millisecond of real time, and a client's clock ticks at most once a
		// millisecond (plus one for the phase): its timestamps move by one.
		data, _ := run(t, w, frame(t, seg{src: cli, dst: ap(vip, 80), srcMAC: clientMAC, ack: true, ts: true, tsval: clientTS + 1, tsecr: 555, payload: 100}))
		if v, _ := tsOf(t, data); v != clientTS+1+off {
			t.Fatalf("data TSval %d, want %d", v, clientTS+1+off)
		}
		run(t, w, frame(t, seg{src: backends[0], dst: natp, srcMAC: beMAC, fin: true, ack: true, ts: true, tsval: 556, tsecr: tv + 1}))
		last, _ := run(t, w, frame(t, seg{src: cli, dst: ap(vip, 80), srcMAC: clientMAC, fin: true, ack: true, ts: true, tsval: clientTS + 1, tsecr: 556}))
		lastToBackend, _ = tsOf(t, last)
		// l4raw's timestamp clock stands still: the next connection, on the
		// same port (taking over the lingering one after nat.MinLinger), must
		// still start above.
		time.Sleep((nat.MinLinger + 10) * time.Millisecond)
	}
	// The partial-checksum path: the seed is left alone.
	clock += 1000
	syn := frame(t, seg{src: ap(client, 200), dst: ap(vip, 80), srcMAC: clientMAC, syn: true, ts: true, tsval: 5, partial: true})
	e2 := New(Config{MaxConns: 10, Timeouts: timeouts, Workers: 1, TSClock: func() uint32 { return clock }})
	if err := e2.Apply(s); err != nil {
		t.Fatal(err)
	}
	e2.SetHop(backends[0].Addr(), &Hop{Ifindex: ifindex, Src: lbMAC, Dst: beMAC})
	e2.SetHealth(backends[0], true)
	out, _ := run(t, e2.Worker(0), syn) // run checks the seed against a recompute
	if v, _ := tsOf(t, out); v != clock+tsHeadroom {
		t.Fatalf("partial: TSval %d, want %d", v, clock+tsHeadroom)
	}
}
