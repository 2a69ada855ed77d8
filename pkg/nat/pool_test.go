package nat

import (
	"errors"
	"math/rand/v2"
	"testing"
)

func client(i int) [16]byte {
	return [16]byte{10: 0xff, 11: 0xff, 12: 198, 13: 18, 14: byte(i >> 8), 15: byte(i)}
}

func TestPoolOrderAndExhaustion(t *testing.T) {
	p := NewPool(PortRange{Lo: 1000, Hi: 1003}, Quarantine)
	for want := uint16(1000); want <= 1003; want++ {
		got, early, err := p.Get(client(1), 0)
		if err != nil || got != want || early {
			t.Fatalf("get: %d %v %v, want %d", got, early, err, want)
		}
	}
	if _, _, err := p.Get(client(1), 0); !errors.Is(err, ErrExhausted) {
		t.Fatalf("exhausted: %v", err)
	}
	if p.InUse() != 4 {
		t.Fatalf("in use %d", p.InUse())
	}
	// Released without quarantine (the client closed first): free at once, oldest first.
	p.Put(1002, client(1), 10, false)
	p.Put(1000, client(1), 10, false)
	p.Put(1000, client(1), 10, false) // double put is ignored
	p.Put(999, client(1), 10, false)  // outside the range is ignored
	if got, _, _ := p.Get(client(2), 20); got != 1002 {
		t.Fatalf("got %d want 1002 (released first)", got)
	}
	if got, _, _ := p.Get(client(2), 20); got != 1000 {
		t.Fatalf("got %d want 1000", got)
	}
}

func TestPoolQuarantine(t *testing.T) {
	const q = 61_000
	p := NewPool(PortRange{Lo: 2000, Hi: 2002}, Quarantine)
	a, _, _ := p.Get(client(1), 0)
	b, _, _ := p.Get(client(2), 0)
	// Both connections closed by the backend: quarantined.
	p.Put(a, client(1), 1000, true)
	p.Put(b, client(2), 1000, true)
	// A never-used port is preferred over quarantined ones.
	if got, early, _ := p.Get(client(3), 2000); got != 2002 || early {
		t.Fatalf("got %d early %v, want 2002", got, early)
	}
	// Now only quarantined ports are left: client 2 gets its own port back at once.
	if got, early, _ := p.Get(client(2), 2000); got != b || early {
		t.Fatalf("same client: got %d early %v, want %d", got, early, b)
	}
	// Client 4 used none of them: it gets the oldest, marked early.
	if got, early, _ := p.Get(client(4), 2000); got != a || !early {
		t.Fatalf("other client: got %d early %v, want %d early", got, early, a)
	}
	p.Put(a, client(4), 3000, true)
	// After the quarantine the port is an ordinary free port for anyone.
	if got, early, _ := p.Get(client(5), 3000+q); got != a || early {
		t.Fatalf("after quarantine: got %d early %v", got, early)
	}
	// A quarantined port whose time is up is used before ready ports.
	p.Put(a, client(5), 3000+q, true)
	p.Put(2002, client(3), 3000+q+5, false)
	if got, _, _ := p.Get(client(6), 3000+2*q+1); got != a {
		t.Fatalf("got %d, want the expired quarantined %d", got, a)
	}
}

func TestPoolReserve(t *testing.T) {
	p := NewPool(PortRange{Lo: 3000, Hi: 3009}, Quarantine)
	if !p.Reserve(3005, client(1)) || p.Reserve(3005, client(1)) || p.Reserve(2999, client(1)) {
		t.Fatal("reserve")
	}
	for i := 0; i < 9; i++ {
		if got, _, _ := p.Get(client(1), 0); got == 3005 {
			t.Fatal("reserved port handed out")
		}
	}
}

// TestPoolModel runs random operations against a model: a port is never
// handed out twice, and every free port can be had.
func TestPoolModel(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	p := NewPool(PortRange{Lo: 40000, Hi: 40099}, Quarantine)
	used := map[uint16][16]byte{}
	now := uint32(0)
	for n := 0; n < 200000; n++ {
		now += uint32(r.IntN(50))
		if r.IntN(2) == 0 {
			c := client(r.IntN(20))
			port, _, err := p.Get(c, now)
			if err != nil {
				if len(used) != 100 {
					t.Fatalf("exhausted with %d in use", len(used))
				}
				continue
			}
			if _, dup := used[port]; dup {
				t.Fatalf("port %d handed out twice", port)
			}
			used[port] = c
		} else if r.IntN(3) == 0 {
			for port, c := range used {
				p.Linger(port, c, r.IntN(2) == 0, now)
				if lp, _, ok := p.Lingering(client(r.IntN(20)), now+MinLinger); !ok {
					t.Fatal("no lingering port offered")
				} else if _, inUse := used[lp]; !inUse {
					t.Fatalf("lingering port %d not in use", lp)
				}
				break
			}
		} else {
			for port, c := range used {
				p.Put(port, c, now, r.IntN(2) == 0)
				delete(used, port)
				break
			}
		}
		if p.InUse() != len(used) {
			t.Fatalf("in use %d, model %d", p.InUse(), len(used))
		}
	}
}

func TestPoolAllocs(t *testing.T) {
	p := NewPool(PortRange{Lo: 1024, Hi: 2047}, Quarantine)
	c := client(1)
	if n := testing.AllocsPerRun(1000, func() {
		port, _, _ := p.Get(c, 0)
		p.Put(port, c, 0, true)
	}); n != 0 {
		t.Fatalf("%v allocs", n)
	}
}

func BenchmarkPoolGetPut(b *testing.B) {
	p := NewPool(PortRange{Lo: 61000, Hi: 65535}, Quarantine)
	c := client(1)
	b.ReportAllocs()
	now := uint32(0)
	for b.Loop() {
		port, _, _ := p.Get(c, now)
		p.Put(port, c, now, true)
		now++
	}
}

func TestPoolLingering(t *testing.T) {
	p := NewPool(PortRange{Lo: 5000, Hi: 5002}, Quarantine)
	a, _, _ := p.Get(client(1), 0)
	b, _, _ := p.Get(client(2), 0)
	c, _, _ := p.Get(client(3), 0)
	if _, ok := func() (uint16, bool) { _, _, ok := p.Lingering(client(9), 0); return 0, ok }(); ok {
		t.Fatal("lingering port offered while none lingers")
	}
	p.Linger(a, client(1), true, 0)  // backend closed first: TIME_WAIT at the backend
	p.Linger(b, client(2), false, 0) // client closed first
	if _, _, ok := p.Lingering(client(1), MinLinger-1); ok {
		t.Fatal("a port offered before it lingered MinLinger")
	}
	if got, early, ok := p.Lingering(client(1), MinLinger); !ok || got != a || early {
		t.Fatalf("same client: %d %v %v, want %d", got, early, ok, a)
	}
	if got, early, ok := p.Lingering(client(7), MinLinger); !ok || got != b || early {
		t.Fatalf("other client: %d %v %v, want %d (no TIME_WAIT)", got, early, ok, b)
	}
	// The caller ends b's entry: its removal puts the port back, Get hands it out.
	p.Put(b, client(2), 10, false)
	if got, _, err := p.Get(client(7), 10); err != nil || got != b {
		t.Fatalf("after removal: %d %v", got, err)
	}
	if got, early, ok := p.Lingering(client(8), MinLinger); !ok || got != a || !early {
		t.Fatalf("only a TIME_WAIT port left: %d %v %v", got, early, ok)
	}
	p.Put(a, client(1), 20, true)
	if p.InUse() != 2 { // b (client 7) and c
		t.Fatalf("in use %d", p.InUse())
	}
	_ = c
}

func TestPoolStartTS(t *testing.T) {
	p := NewPool(PortRange{Lo: 7000, Hi: 7000}, Quarantine)
	c := client(1)
	port, _, _ := p.Get(c, 0)
	if got := p.StartTS(port, 1000, 0); got != 1000 {
		t.Fatalf("first start %d", got)
	}
	p.Put(port, c, 500, true) // ran 500 ms: its last timestamp was at most 1000+500+1
	port, _, _ = p.Get(c, 500)
	if got := p.StartTS(port, 1010, 500); got != 1502 {
		t.Fatalf("start %d, want 1502 (above the previous connection's end)", got)
	}
	p.Put(port, c, 600, true)
	port, _, _ = p.Get(c, 5000)
	if got := p.StartTS(port, 9000, 5000); got != 9000 {
		t.Fatalf("start %d, want 9000 (the clock is already above)", got)
	}
}

func TestPoolPassed(t *testing.T) {
	p := NewPool(PortRange{Lo: 8000, Hi: 8001}, Quarantine)
	a, _, _ := p.Get(client(1), 0)
	b, _, _ := p.Get(client(2), 0)
	p.Linger(a, client(1), false, 0)
	p.Linger(b, client(2), false, 0)
	if got, _, _ := p.Lingering(client(9), MinLinger); got != a {
		t.Fatalf("got %d want %d", got, a)
	}
	p.Passed(a)
	if got, _, _ := p.Lingering(client(9), MinLinger); got != b {
		t.Fatalf("after Passed: got %d want %d", got, b)
	}
}
