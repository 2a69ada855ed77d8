package sched

import "sync/atomic"

// lc is weighted least connections (IPVS wlc without its inactive term):
// the candidate with the fewest active connections per unit of weight,
// ties broken round robin: the scan starts after the last pick, so tied
// candidates take turns.
//
// Pick reads every candidate's counter, N atomic loads of cache lines that
// other workers write on each new and closed connection: fine for tens of
// backends, linear beyond. A burst of SYNs handled before the first of them
// is counted sees the same counts; the round-robin tie break spreads such a
// burst instead of sending it all to one backend.
type lc struct {
	ids    []uint32
	weight []int64
	active []*atomic.Int64
	next   *atomic.Uint64 // where the next scan starts: after the last pick
	zero   atomic.Int64   // stands in for a nil Active; never written
}

func newLC(ws []Candidate, prev Scheduler) *lc {
	s := &lc{}
	if p, ok := prev.(*lc); ok {
		s.next = p.next
	} else {
		s.next = new(atomic.Uint64)
	}
	for _, c := range ws {
		s.ids = append(s.ids, c.ID)
		s.weight = append(s.weight, int64(c.Weight))
	}
	s.active = actives(ws, &s.zero)
	return s
}

func (s *lc) Name() string { return "lc" }

func (s *lc) Pick(Key) (uint32, bool) {
	n := uint64(len(s.ids))
	if n == 0 {
		return 0, false
	}
	// A plain load and store, not an add: two workers that pick at the
	// same moment may start at the same place and, with equal counts,
	// choose the same backend; a lost turn costs nothing else.
	start := s.next.Load() % n
	best := int(start)
	ba, bw := load(s.active[best]), s.weight[best]
	for i, j := best, 1; j < len(s.ids); j++ {
		if i++; i == len(s.ids) {
			i = 0
		}
		a, w := load(s.active[i]), s.weight[i]
		// a/w < ba/bw without division; counts stay far below 2^47, so
		// with weights ≤ 2^16 the products fit in 63 bits.
		if a*bw < ba*w {
			best, ba, bw = i, a, w
		}
	}
	s.next.Store(uint64(best) + 1)
	return s.ids[best], true
}
