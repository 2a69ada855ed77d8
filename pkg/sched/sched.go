// Package sched chooses the backend of each new connection.
//
// A Scheduler is built off the data path from the backends that may take new
// connections (healthy, not drained) and then only read: the engine publishes
// it through an atomic pointer and rebuilds it when the set changes, so Pick
// never takes a lock and never allocates. Whatever a scheduler needs beyond
// a counter (a weighted sequence, a Maglev table) is computed in New.
// Existing connections never consult a scheduler: the connection table keeps
// them on their backend.
//
// The schedulers, by configuration name:
//
//	rr      round robin, ignoring weights (beyond 0 = no new connections)
//	wrr     smooth weighted round robin
//	lc      weighted least active connections (IPVS wlc)
//	random  power of two random choices, weighted (HAProxy random(2))
//	sh      source-address hash: a consistent (Maglev) table keyed on the
//	        client address, for client affinity
//	maglev  weighted Maglev consistent hashing keyed on the client 4-tuple
package sched

import (
	"errors"
	"fmt"
	"sync/atomic"
)

// Candidate is a backend that may take new connections.
type Candidate struct {
	ID uint32 // the caller's backend identifier
	// Weight is the relative share of new connections; 0 takes none (a
	// drained backend). Values above MaxWeight count as MaxWeight.
	Weight int
	// Name is the backend's stable identity for the consistent-hash
	// schedulers (maglev, sh), e.g. its "address:port". Instances given the
	// same names build the same table whatever the IDs and the order of
	// the candidates; empty means the ID is the identity.
	Name string
	// Active, if not nil, is the backend's live count of connections, read
	// by lc and random; nil counts as 0.
	Active *atomic.Int64
}

// Key is what a scheduler knows of a new connection: hashes, so the
// scheduler never sees addresses and all hashing is done once by the caller.
type Key struct {
	Flow   uint64 // hash of the client 4-tuple
	Client uint64 // hash of the client address only
}

// Scheduler picks a backend for a new connection. Pick is safe for
// concurrent use, lock-free and allocation-free.
type Scheduler interface {
	// Pick returns the ID of the backend for the connection k; ok is false
	// when no backend can take it.
	Pick(k Key) (id uint32, ok bool)
	// Name is the scheduler's configuration name.
	Name() string
}

// Names returns the scheduler names New accepts; the empty name is rr.
func Names() []string { return []string{"rr", "wrr", "lc", "random", "sh", "maglev"} }

const (
	// MaxWeight is the largest weight a candidate counts with: the range
	// ipvsadm(8) accepts, and small enough that a sum of 65535 weights fits
	// in 32 bits and active×weight products in 63.
	MaxWeight = 65535
	// MaxCandidates is the most candidates with a weight above zero one
	// scheduler takes: the tables hold 16-bit candidate indexes.
	MaxCandidates = 65535
	// DefaultTableSize is the Maglev lookup table size: the prime Katran
	// uses (katran/lib/bpf/balancer_consts.h, RING_SIZE) and the Maglev
	// paper's example (Eisenbud et al., NSDI 2016, §3.4).
	DefaultTableSize = 65537
	// maxTableSize bounds TableSize: 16 Mi 16-bit entries, 32 MiB per
	// scheduler, far beyond any useful table.
	maxTableSize = 1 << 24
)

// ErrTooManyCandidates is returned by New for more than MaxCandidates
// candidates with a weight above zero.
var ErrTooManyCandidates = errors.New("too many candidates")

// Option changes how New builds a scheduler.
type Option func(*options) error

type options struct {
	tableSize uint32
}

// TableSize sets the Maglev table size of maglev and sh (default
// DefaultTableSize). It must be a prime, so every backend's permutation
// visits every slot. New grows it to the smallest prime at least 100 times
// the number of candidates if it is smaller: the Maglev paper (§3.4) keeps
// M > 100 N so backends' shares differ by at most about 1 %. Instances that
// must agree on the table need the same size.
func TableSize(m uint32) Option {
	return func(o *options) error {
		if m < 2 || m > maxTableSize || !isPrime(m) {
			return fmt.Errorf("sched: maglev table size %d: not a prime in 2..%d", m, maxTableSize)
		}
		o.tableSize = m
		return nil
	}
}

// New returns the scheduler called name over cands. prev, the scheduler it
// replaces (or nil), lets rr, wrr, lc and random continue their rotation or
// random sequence, so a health change does not send the next connections
// to the first backend again. The consistent-hash schedulers need no prev:
// their table depends on the candidates alone.
func New(name string, cands []Candidate, prev Scheduler, opts ...Option) (Scheduler, error) {
	o := options{tableSize: DefaultTableSize}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	ws := weighted(cands)
	if len(ws) > MaxCandidates {
		return nil, fmt.Errorf("sched: %d candidates with a weight: %w (at most %d)", len(ws), ErrTooManyCandidates, MaxCandidates)
	}
	switch name {
	case "rr", "":
		return newRR(ws, prev), nil
	case "wrr":
		return newWRR(ws, prev), nil
	case "lc":
		return newLC(ws, prev), nil
	case "random":
		return newRandom(ws, prev), nil
	case "sh":
		return newMaglev("sh", ws, o.tableSize, true), nil
	case "maglev":
		return newMaglev("maglev", ws, o.tableSize, false), nil
	}
	return nil, fmt.Errorf("sched: unknown scheduler %q", name)
}

// weighted returns the candidates that take new connections, in order,
// with weights clamped to MaxWeight.
func weighted(cands []Candidate) []Candidate {
	var ws []Candidate
	for _, c := range cands {
		if c.Weight <= 0 {
			continue
		}
		c.Weight = min(c.Weight, MaxWeight)
		ws = append(ws, c)
	}
	return ws
}

// actives returns the candidates' active counters, with nil replaced by
// zero, so Pick loads without a branch.
func actives(ws []Candidate, zero *atomic.Int64) []*atomic.Int64 {
	a := make([]*atomic.Int64, len(ws))
	for i, c := range ws {
		a[i] = c.Active
		if a[i] == nil {
			a[i] = zero
		}
	}
	return a
}

// load reads an active count; a transiently negative count is 0.
func load(a *atomic.Int64) int64 { return max(a.Load(), 0) }

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func isPrime(n uint32) bool {
	if n < 2 {
		return false
	}
	for d := uint32(2); uint64(d)*uint64(d) <= uint64(n); d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// nextPrime returns the smallest prime ≥ n.
func nextPrime(n uint32) uint32 {
	for !isPrime(n) {
		n++
	}
	return n
}
