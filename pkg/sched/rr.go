package sched

import "sync/atomic"

// rr is round robin over the candidates, in order, ignoring their weights.
type rr struct {
	ids  []uint32
	next *atomic.Uint64
}

func newRR(ws []Candidate, prev Scheduler) *rr {
	s := &rr{}
	for _, c := range ws {
		s.ids = append(s.ids, c.ID)
	}
	if p, ok := prev.(*rr); ok {
		s.next = p.next
	} else {
		s.next = new(atomic.Uint64)
	}
	return s
}

func (s *rr) Name() string { return "rr" }

func (s *rr) Pick(Key) (uint32, bool) {
	if len(s.ids) == 0 {
		return 0, false
	}
	return s.ids[(s.next.Add(1)-1)%uint64(len(s.ids))], true
}
