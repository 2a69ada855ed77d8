package conntrack

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var testTimeouts = Timeouts{SYN: 60 * time.Second, Established: 900 * time.Second, FIN: 120 * time.Second, TimeWait: 10 * time.Second, Close: 10 * time.Second}

const (
	SYN    = flagSYN
	ACK    = flagACK
	FIN    = flagFIN
	RST    = flagRST
	SYNACK = flagSYN | flagACK
	FINACK = flagFIN | flagACK
)

func TestNext(t *testing.T) {
	type step struct {
		d    Dir
		fl   uint8
		want State
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"handshake and client closes first", []step{
			{Orig, SYN, SynSent}, {Reply, SYNACK, SynRecv}, {Orig, ACK, Established}, {Orig, ACK | 0x08, Established},
			{Orig, FINACK, FinWait}, {Reply, ACK, FinWait}, {Reply, FINACK, TimeWait}, {Orig, ACK, TimeWait}}},
		{"server closes first", []step{
			{Orig, SYN, SynSent}, {Reply, SYNACK, SynRecv}, {Orig, ACK, Established},
			{Reply, FINACK, CloseWait}, {Orig, ACK, CloseWait}, {Orig, FINACK, TimeWait}, {Reply, ACK, TimeWait}}},
		{"retransmitted SYN", []step{{Orig, SYN, SynSent}, {Orig, SYN, SynSent}, {Reply, SYNACK, SynRecv}, {Orig, SYN, SynRecv}}},
		{"SYN-ACK from the client is not a handshake", []step{{Orig, SYN, SynSent}, {Orig, SYNACK, SynSent}}},
		{"refused: backend RST", []step{{Orig, SYN, SynSent}, {Reply, RST | ACK, Close}}},
		{"client RST when established", []step{{Orig, SYN, SynSent}, {Reply, SYNACK, SynRecv}, {Orig, ACK, Established}, {Orig, RST, Close}}},
		{"RST after FINs", []step{{Orig, SYN, SynSent}, {Reply, SYNACK, SynRecv}, {Orig, ACK, Established}, {Orig, FINACK, FinWait}, {Reply, RST, Close}}},
		{"FIN during handshake", []step{{Orig, SYN, SynSent}, {Reply, SYNACK, SynRecv}, {Orig, FINACK, FinWait}, {Reply, FINACK, TimeWait}}},
		{"simultaneous close", []step{{Orig, SYN, SynSent}, {Reply, SYNACK, SynRecv}, {Orig, ACK, Established}, {Orig, FINACK, FinWait}, {Reply, FINACK, TimeWait}}},
		{"nothing starts without a client SYN", []step{{Reply, SYNACK, None}, {Orig, ACK, None}}},
	}
	for _, c := range cases {
		s := None
		for i, st := range c.steps {
			if s = Next(s, st.fl, st.d); s != st.want {
				t.Errorf("%s: step %d (dir %d flags %#x): got %v want %v", c.name, i, st.d, st.fl, s, st.want)
				break
			}
		}
	}
	if TimeWait.String() != "TIME_WAIT" || State(200).String() != "INVALID" {
		t.Error("String")
	}
}

func tuples(i int) (o, r Tuple) {
	c := AddrFrom4([4]byte{198, 18, byte(i >> 16), byte(i >> 8)})
	o = Tuple{Src: c, Dst: AddrFrom4([4]byte{198, 18, 0, 100}), SrcPort: uint16(i), DstPort: 80, Proto: 6}
	r = Tuple{Src: AddrFrom4([4]byte{198, 18, 0, 21}), Dst: AddrFrom4([4]byte{198, 18, 0, 2}), SrcPort: 8080, DstPort: uint16(i), Proto: 6}
	return
}

func insert(t *testing.T, tb *Table, i int, now uint32) Flow {
	t.Helper()
	o, r := tuples(i)
	f := Flow{Orig: o, Reply: r, Backend: uint32(i % 3), Service: 1, ClientMAC: [6]byte{2, 0, 0, 0, 0, byte(i)}, IfSlot: uint8(i % 4)}
	if res := tb.Insert(&f, now); res != Inserted {
		t.Fatalf("insert %d: %d", i, res)
	}
	return f
}

func TestInsertTrack(t *testing.T) {
	var removed []Flow
	tb := New(Config{MaxConns: 4, Timeouts: testTimeouts, OnRemove: func(f Flow) { removed = append(removed, f) }})
	f := insert(t, tb, 1, 0)
	var out Flow
	// A retransmitted SYN finds the same entry and the same backend.
	if r := tb.Track(&f.Orig, Orig, SYN, 1000, &out); r != Hit || out.Backend != f.Backend || out.State != SynSent {
		t.Fatalf("retransmitted SYN: %d %+v", r, out)
	}
	// Inserting the same client tuple again (a SYN copy racing the first) yields the existing entry.
	dup := Flow{Orig: f.Orig, Reply: f.Reply, Backend: 99}
	if r := tb.Insert(&dup, 1000); r != Exists || dup.Backend != f.Backend {
		t.Fatalf("duplicate insert: %d backend %d", r, dup.Backend)
	}
	// A different client on the same NAT port collides.
	o2, _ := tuples(2)
	col := Flow{Orig: o2, Reply: f.Reply}
	if r := tb.Insert(&col, 1000); r != Collision {
		t.Fatalf("reply collision: %d", r)
	}
	if tb.Len() != 1 {
		t.Fatalf("len %d", tb.Len())
	}
	if r := tb.Track(&f.Reply, Reply, SYNACK, 1000, &out); r != Hit || out.State != SynRecv || out.Orig != f.Orig || out.ClientMAC != f.ClientMAC {
		t.Fatalf("reply: %d %+v", r, out)
	}
	if r := tb.Track(&f.Orig, Orig, ACK, 1000, &out); r != Hit || out.State != Established {
		t.Fatalf("ack: %d %v", r, out.State)
	}
	if tb.Track(&f.Reply, Reply, FINACK, 1000, &out); out.State != CloseWait || !out.BackendClosedFirst {
		t.Fatalf("backend FIN: %v %v", out.State, out.BackendClosedFirst)
	}
	if tb.Track(&f.Orig, Orig, FINACK, 1000, &out); out.State != TimeWait || !out.BackendClosedFirst || out.IfSlot != f.IfSlot {
		t.Fatalf("client FIN: %v %v", out.State, out.BackendClosedFirst)
	}
	o3, _ := tuples(3)
	if r := tb.Track(&o3, Orig, ACK, 1000, &out); r != Miss {
		t.Fatalf("unknown flow: %d", r)
	}
	// Fill the table: the fifth insert fails, the established flow still works.
	for i := 2; i <= 4; i++ {
		insert(t, tb, i, 1000)
	}
	o5, r5 := tuples(5)
	full := Flow{Orig: o5, Reply: r5}
	if r := tb.Insert(&full, 1000); r != Full {
		t.Fatalf("full: %d", r)
	}
	if r := tb.Track(&f.Orig, Orig, ACK, 2000, &out); r != Hit {
		t.Fatalf("established flow lost when full: %d", r)
	}
	if len(removed) != 0 {
		t.Fatalf("removed %d", len(removed))
	}
}

func TestExpiry(t *testing.T) {
	var removed atomic.Int32
	tb := New(Config{MaxConns: 100, Timeouts: testTimeouts, OnRemove: func(Flow) { removed.Add(1) }})
	syn := insert(t, tb, 1, 0) // never answered
	est := insert(t, tb, 2, 0)
	var out Flow
	tb.Track(&est.Reply, Reply, SYNACK, 10, &out)
	tb.Track(&est.Orig, Orig, ACK, 20, &out)
	fin := insert(t, tb, 3, 0)
	tb.Track(&fin.Reply, Reply, SYNACK, 10, &out)
	tb.Track(&fin.Orig, Orig, ACK, 20, &out)
	tb.Track(&fin.Orig, Orig, FINACK, 30_000, &out)
	tb.Track(&fin.Reply, Reply, FINACK, 30_000, &out) // both FINs: TIME_WAIT, 10 s linger
	rst := insert(t, tb, 4, 0)
	tb.Track(&rst.Reply, Reply, RST|ACK, 28_000, &out) // refused: CLOSE, 10 s

	// Entries leave within two ticks (2.048 s) after their deadline, never before.
	expect := func(now uint32, want int, what string) {
		t.Helper()
		if n := tb.Expire(now, 1000); n != want {
			t.Fatalf("%s: expired %d at %d ms, want %d", what, n, now, want)
		}
	}
	expect(30_000, 0, "nothing due")
	// The last ACK after both FINs is still forwarded during the linger.
	if r := tb.Track(&fin.Orig, Orig, ACK, 35_000, &out); r != Hit || out.State != TimeWait {
		t.Fatalf("last ACK: %d %v", r, out.State)
	}
	expect(37_999, 0, "closed, before its deadline")
	expect(40_100, 1, "closed, 10 s after the RST")
	expect(44_999, 0, "time wait, before its deadline")
	expect(47_100, 1, "time wait, 10 s after its last packet")
	expect(59_999, 0, "unanswered SYN, before its deadline")
	expect(62_100, 1, "unanswered SYN")
	if tb.Lookup(&syn.Orig, Orig, &out) {
		t.Fatal("syn entry still there")
	}
	// The established one was filed again at 60 s and lives 900 s from its last packet.
	tb.Track(&est.Orig, Orig, ACK, 100_000, &out)
	expect(999_999, 0, "established, before its deadline")
	expect(1_002_100, 1, "established")
	if tb.Len() != 0 || removed.Load() != 4 {
		t.Fatalf("len %d removed %d", tb.Len(), removed.Load())
	}
}

func TestExpireBudget(t *testing.T) {
	tb := New(Config{MaxConns: 1000, Timeouts: testTimeouts})
	for i := 1; i <= 500; i++ {
		insert(t, tb, i, 0)
	}
	total := 0
	for k := 0; k < 10; k++ {
		n := tb.Expire(63_000, 100)
		if n > 100 {
			t.Fatalf("budget exceeded: %d", n)
		}
		total += n
	}
	if total != 500 || tb.Len() != 0 {
		t.Fatalf("total %d len %d", total, tb.Len())
	}
}

func TestReopen(t *testing.T) {
	var removed int
	tb := New(Config{MaxConns: 10, Timeouts: testTimeouts, OnRemove: func(Flow) { removed++ }})
	f := insert(t, tb, 1, 0)
	var out Flow
	tb.Track(&f.Reply, Reply, RST|ACK, 10, &out)
	if r := tb.Track(&f.Orig, Orig, SYN, 1000, &out); r != Reopened {
		t.Fatalf("SYN after RST: %d", r)
	}
	if tb.Len() != 0 || removed != 1 {
		t.Fatalf("len %d removed %d", tb.Len(), removed)
	}
	insert(t, tb, 1, 1000)
}

func TestDeleteAndWalk(t *testing.T) {
	tb := New(Config{MaxConns: 5000, Timeouts: testTimeouts})
	for i := 1; i <= 3000; i++ {
		insert(t, tb, i, 0)
	}
	o, _ := tuples(7)
	if !tb.Delete(&o, Orig) || tb.Delete(&o, Orig) {
		t.Fatal("delete")
	}
	n := 0
	tb.Walk(func(f *Flow) bool { n++; return true })
	if n != 2999 || tb.Len() != 2999 {
		t.Fatalf("walk %d len %d", n, tb.Len())
	}
	n = 0
	tb.Walk(func(f *Flow) bool { n++; return n < 10 })
	if n != 10 {
		t.Fatalf("walk stop %d", n)
	}
}

// TestConcurrent hammers one table from several goroutines — both directions
// of the same flows on different goroutines, as PACKET_FANOUT workers do —
// with the sweeper and deletes running; run with -race.
func TestConcurrent(t *testing.T) {
	var removed atomic.Int64
	tb := New(Config{MaxConns: 2000, Timeouts: Timeouts{SYN: 5 * time.Millisecond, Established: 20 * time.Millisecond, FIN: 5 * time.Millisecond, TimeWait: 2 * time.Millisecond, Close: 2 * time.Millisecond},
		OnRemove: func(Flow) { removed.Add(1) }})
	var inserted atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	workers := runtime.GOMAXPROCS(0) * 2
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 9))
			var out Flow
			for n := 0; n < 20000; n++ {
				i := 1 + r.IntN(3000)
				o, rp := tuples(i)
				now := uint32(n / 10)
				switch r.IntN(6) {
				case 0:
					f := Flow{Orig: o, Reply: rp}
					if tb.Insert(&f, now) == Inserted {
						inserted.Add(1)
					}
				case 1:
					tb.Track(&o, Orig, SYN, now, &out)
				case 2:
					tb.Track(&rp, Reply, SYNACK, now, &out)
				case 3:
					tb.Track(&o, Orig, []uint8{ACK, FINACK, RST}[r.IntN(3)], now, &out)
				case 4:
					tb.Track(&rp, Reply, FINACK, now, &out)
				case 5:
					tb.Delete(&o, Orig)
				}
			}
		}(w)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := uint32(0); ; k++ {
			select {
			case <-stop:
				return
			default:
				tb.Expire(k, 50)
				runtime.Gosched()
			}
		}
	}()
	time.Sleep(10 * time.Millisecond)
	// Wait for the packet workers, then stop the sweeper.
	done := make(chan struct{})
	go func() {
		for inserted.Load() == 0 {
			runtime.Gosched()
		}
		close(done)
	}()
	<-done
	close(stop)
	wg.Wait()
	if err := tb.check(); err != nil {
		t.Fatal(err)
	}
	n := 0
	tb.Walk(func(*Flow) bool { n++; return true })
	if int64(n) != int64(tb.Len()) || inserted.Load()-removed.Load() != int64(tb.Len()) {
		t.Fatalf("walk %d len %d inserted %d removed %d", n, tb.Len(), inserted.Load(), removed.Load())
	}
	tb.Expire(1<<30, 1<<20)
	if tb.Len() != 0 || inserted.Load() != removed.Load() {
		t.Fatalf("after full expiry: len %d inserted %d removed %d", tb.Len(), inserted.Load(), removed.Load())
	}
}

func TestMarkReset(t *testing.T) {
	tb := New(Config{MaxConns: 100, Timeouts: testTimeouts})
	for i := 1; i <= 9; i++ {
		insert(t, tb, i, 0)
	}
	if n := tb.MarkReset(func(f *Flow) bool { return f.Backend == 1 }); n != 3 {
		t.Fatalf("marked %d, want 3", n)
	}
	if n := tb.MarkReset(func(f *Flow) bool { return f.Backend == 1 }); n != 0 {
		t.Fatalf("marked again %d", n)
	}
	var out Flow
	for i := 1; i <= 9; i++ {
		o, _ := tuples(i)
		tb.Track(&o, Orig, ACK, 10, &out)
		if want := i%3 == 1; out.Reset != want || (want && out.State != Close) {
			t.Fatalf("flow %d: reset %v state %v", i, out.Reset, out.State)
		}
	}
}

func TestDeleteReply(t *testing.T) {
	var removed []Flow
	tb := New(Config{MaxConns: 10, Timeouts: testTimeouts, OnRemove: func(f Flow) { removed = append(removed, f) }})
	f := insert(t, tb, 1, 0)
	if !tb.Delete(&f.Reply, Reply) || tb.Delete(&f.Reply, Reply) || tb.Len() != 0 || len(removed) != 1 || removed[0].Orig != f.Orig {
		t.Fatalf("delete by reply tuple: len %d removed %v", tb.Len(), removed)
	}
}
