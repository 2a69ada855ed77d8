// Package sched chooses the backend of each new connection.
//
// A Scheduler is built off the data path from the backends that may take new
// connections (healthy, not drained) and then only read: the engine publishes
// it through an atomic pointer and rebuilds it when the set changes, so Pick
// never takes a lock. Existing connections never consult a scheduler: the
// connection table keeps them on their backend.
package sched

import (
	"fmt"
	"sync/atomic"
)

// Candidate is a backend that may take new connections.
type Candidate struct {
	ID     uint32 // the caller's backend identifier
	Weight int    // relative share of new connections; 0 takes none
}

// Scheduler picks a backend for a new connection.
type Scheduler interface {
	// Pick returns the ID of the backend for a connection whose client
	// tuple hashes to h; ok is false when no backend can take it.
	Pick(h uint64) (id uint32, ok bool)
	// Name is the scheduler's configuration name.
	Name() string
}

// New returns the scheduler called name over cands. prev, the scheduler it
// replaces (or nil), lets a round robin continue where it was, so a health
// change does not send the next connections to the first backend again.
func New(name string, cands []Candidate, prev Scheduler) (Scheduler, error) {
	switch name {
	case "rr", "":
		return newRR(cands, prev), nil
	}
	return nil, fmt.Errorf("sched: unknown scheduler %q", name)
}

// rr is round robin over the candidates with a weight above zero, in order.
type rr struct {
	ids  []uint32
	next *atomic.Uint64
}

func newRR(cands []Candidate, prev Scheduler) *rr {
	s := &rr{}
	for _, c := range cands {
		if c.Weight > 0 {
			s.ids = append(s.ids, c.ID)
		}
	}
	if p, ok := prev.(*rr); ok {
		s.next = p.next
	} else {
		s.next = new(atomic.Uint64)
	}
	return s
}

func (s *rr) Name() string { return "rr" }

func (s *rr) Pick(uint64) (uint32, bool) {
	if len(s.ids) == 0 {
		return 0, false
	}
	return s.ids[(s.next.Add(1)-1)%uint64(len(s.ids))], true
}
