package sched

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// keys returns n connection keys from a fixed seed, so spread tests are
// reproducible.
func keys(n int, seed uint64) []Key {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	ks := make([]Key, n)
	for i := range ks {
		ks[i] = Key{Flow: r.Uint64(), Client: r.Uint64()}
	}
	return ks
}

func cands(weights ...int) []Candidate {
	cs := make([]Candidate, len(weights))
	for i, w := range weights {
		cs[i] = Candidate{ID: uint32(i + 1), Weight: w, Name: fmt.Sprintf("198.18.0.%d:80", i+1)}
	}
	return cs
}

func mustNew(t testing.TB, name string, cs []Candidate, prev Scheduler, opts ...Option) Scheduler {
	t.Helper()
	s, err := New(name, cs, prev, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func spread(s Scheduler, ks []Key) map[uint32]int {
	count := map[uint32]int{}
	for _, k := range ks {
		id, ok := s.Pick(k)
		if !ok {
			return nil
		}
		count[id]++
	}
	return count
}

func TestNames(t *testing.T) {
	for _, name := range append(Names(), "") {
		s := mustNew(t, name, cands(1), nil)
		want := name
		if name == "" {
			want = "rr"
		}
		if s.Name() != want {
			t.Errorf("New(%q).Name() = %q", name, s.Name())
		}
	}
	if _, err := New("wlc", nil, nil); err == nil || err.Error() != `sched: unknown scheduler "wlc"` {
		t.Fatalf("unknown scheduler: %v", err)
	}
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		m   uint32
		err string
	}{
		{65537, ""},
		{16381, ""}, // Cilium's default
		{2, ""},
		{65536, "sched: maglev table size 65536: not a prime in 2..16777216"},
		{1, "sched: maglev table size 1: not a prime in 2..16777216"},
		{0, "sched: maglev table size 0: not a prime in 2..16777216"},
		{16777259, "sched: maglev table size 16777259: not a prime in 2..16777216"}, // prime, too big
	} {
		_, err := New("maglev", cands(1, 1), nil, TableSize(tc.m))
		if got := fmt.Sprint(err); (tc.err == "" && err != nil) || (tc.err != "" && got != tc.err) {
			t.Errorf("TableSize(%d): %v, want %q", tc.m, err, tc.err)
		}
	}
}

func TestTooManyCandidates(t *testing.T) {
	cs := make([]Candidate, MaxCandidates+1)
	for i := range cs {
		cs[i] = Candidate{ID: uint32(i), Weight: 1}
	}
	if _, err := New("rr", cs, nil); !errors.Is(err, ErrTooManyCandidates) {
		t.Fatalf("%d candidates: %v", len(cs), err)
	}
	cs[0].Weight = 0 // a drained one does not count
	mustNew(t, "wrr", cs, nil)
}

// Every scheduler: nothing to pick from an empty or fully drained set,
// drained candidates never picked, weights above MaxWeight clamped.
func TestEmptyAndDrained(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			for _, cs := range [][]Candidate{nil, {}, cands(0), cands(0, 0, -1)} {
				if _, ok := mustNew(t, name, cs, nil).Pick(Key{1, 2}); ok {
					t.Fatalf("picked from %v", cs)
				}
			}
			// 1<<30 counts as MaxWeight, so 2 and 4 share equally.
			s := mustNew(t, name, cands(0, MaxWeight, 0, 1<<30, -5), nil)
			count := spread(s, keys(10_000, 1))
			if count == nil || count[1] != 0 || count[3] != 0 || count[5] != 0 || count[2] < 4500 || count[4] < 4500 {
				t.Fatalf("spread %v", count)
			}
		})
	}
}

func TestRoundRobin(t *testing.T) {
	s := mustNew(t, "rr", []Candidate{{ID: 1, Weight: 1}, {ID: 2, Weight: 1}, {ID: 3}, {ID: 4, Weight: 5}}, nil)
	count := spread(s, keys(300, 1))
	if count[1] != 100 || count[2] != 100 || count[4] != 100 || count[3] != 0 {
		t.Fatalf("spread %v", count)
	}
}

// A rebuilt rr, wrr or lc continues its rotation instead of starting over,
// and random its sequence.
func TestPrevContinues(t *testing.T) {
	for _, name := range []string{"rr", "wrr", "lc", "random"} {
		t.Run(name, func(t *testing.T) {
			cs := cands(1, 1, 1) // 8 picks are not a whole number of rounds
			s := mustNew(t, name, cs, nil)
			var fresh, continued []uint32
			for range 8 {
				id, _ := s.Pick(Key{})
				fresh = append(fresh, id)
			}
			s2 := mustNew(t, name, cs, s)
			for range 8 {
				id, _ := s2.Pick(Key{})
				continued = append(continued, id)
			}
			if fmt.Sprint(fresh) == fmt.Sprint(continued) {
				t.Fatalf("restarted: %v then %v", fresh, continued)
			}
			// A scheduler of another kind is no prev: no panic, fresh state.
			mustNew(t, name, cs, mustNew(t, "maglev", cs, nil)).Pick(Key{})
		})
	}
}

func TestPickAllocs(t *testing.T) {
	act := new(atomic.Int64)
	cs := cands(1, 2, 3)
	cs[1].Active = act
	ks := keys(64, 3)
	for _, name := range Names() {
		s := mustNew(t, name, cs, nil)
		i := 0
		if n := testing.AllocsPerRun(1000, func() { s.Pick(ks[i%len(ks)]); i++ }); n != 0 {
			t.Errorf("%s: %v allocs per pick", name, n)
		}
	}
}

// Pick from many goroutines at once (meaningful under -race): every pick
// succeeds and returns a candidate, counters and all.
func TestConcurrentPick(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			cs := cands(1, 2, 3, 4)
			for i := range cs {
				cs[i].Active = new(atomic.Int64)
			}
			s := mustNew(t, name, cs, nil)
			var wg sync.WaitGroup
			var bad atomic.Int64
			for g := range 4 {
				wg.Go(func() {
					for _, k := range keys(5000, uint64(g)) {
						id, ok := s.Pick(k)
						if !ok || id < 1 || id > 4 {
							bad.Add(1)
							continue
						}
						cs[id-1].Active.Add(1)
					}
				})
			}
			wg.Wait()
			if bad.Load() != 0 {
				t.Fatalf("%d bad picks", bad.Load())
			}
		})
	}
}

func BenchmarkPick(b *testing.B) {
	for _, name := range Names() {
		for _, n := range []int{4, 32} {
			b.Run(fmt.Sprintf("%s/%d", name, n), func(b *testing.B) {
				cs := make([]Candidate, n)
				for i := range cs {
					cs[i] = Candidate{ID: uint32(i), Weight: 1 + i%3, Active: new(atomic.Int64), Name: fmt.Sprint(i)}
					cs[i].Active.Store(int64(i * 7 % 5))
				}
				s := mustNew(b, name, cs, nil)
				ks := keys(1024, 9)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					s.Pick(ks[i&1023])
					i++
				}
			})
		}
	}
}

// BenchmarkNew measures a rebuild (what a health change costs the control
// plane) for each scheduler over 100 backends of weights 1..7.
func BenchmarkNew(b *testing.B) {
	cs := make([]Candidate, 100)
	for i := range cs {
		cs[i] = Candidate{ID: uint32(i), Weight: 1 + i%7, Name: fmt.Sprintf("198.18.1.%d:80", i)}
	}
	for _, name := range Names() {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				mustNew(b, name, cs, nil)
			}
		})
	}
}

// FuzzNew builds every scheduler from arbitrary weights and checks what
// holds for all of them: a pick exists exactly when some weight is above
// zero, and it is always such a candidate.
func FuzzNew(f *testing.F) {
	f.Add([]byte{1, 2, 3}, uint64(7))
	f.Add([]byte{0, 0, 9}, uint64(1))
	f.Add([]byte{}, uint64(0))
	f.Add([]byte{255, 1, 0, 128}, uint64(1<<63))
	f.Fuzz(func(t *testing.T, weights []byte, h uint64) {
		if len(weights) > 64 {
			weights = weights[:64]
		}
		cs := make([]Candidate, len(weights))
		any := false
		for i, w := range weights {
			// The top bit scales the weight up, to reach MaxWeight and beyond.
			wt := int(w & 0x7f)
			if w&0x80 != 0 {
				wt <<= 10
			}
			cs[i] = Candidate{ID: uint32(i), Weight: wt}
			any = any || wt > 0
		}
		for _, name := range Names() {
			s, err := New(name, cs, nil, TableSize(1009))
			if err != nil {
				t.Fatal(err)
			}
			for j := range uint64(8) {
				id, ok := s.Pick(Key{Flow: h + j*golden, Client: h ^ j})
				if ok != any || (ok && (int(id) >= len(cs) || cs[id].Weight <= 0)) {
					t.Fatalf("%s over %v: picked %d, %v", name, weights, id, ok)
				}
			}
		}
	})
}
