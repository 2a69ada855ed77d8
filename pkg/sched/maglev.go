package sched

import (
	"cmp"
	"encoding/binary"
	"hash/fnv"
	"math/bits"
	"slices"
)

// maglev is weighted Maglev consistent hashing (Eisenbud et al., "Maglev: A
// Fast and Reliable Software Network Load Balancer", NSDI 2016, §3.4, with
// Katran's weighting, katran/lib/MaglevHashV2.cpp). Each backend's identity
// gives it an offset and a skip, so a permutation of the table's M slots
// (M prime, so every skip visits every slot); backends take turns claiming
// their next free preferred slot until the table is full, and a backend of
// weight w takes a turn in w/max(weight) of the rounds. Pick is one
// multiply and two loads.
//
// Every table is a function of the candidates' identities and weights
// alone, not of their IDs, order or history: instances that agree on the
// backends agree on the table. When a backend goes, its slots go to the
// others and few other slots change owner (the paper's "minimal
// disruption"; the tests measure it).
//
// maglev keys on the connection's 4-tuple hash (Key.Flow): behind ECMP, a
// router that changes its set of balancer instances sends some established
// connections to an instance that has never seen them, and that instance
// must pick the same backend from the packet alone; hashing the whole tuple
// also spreads a client's many connections (a NATed office, a proxy) over
// all backends. That agreement needs the same Key.Flow function (hash and
// seed) on every instance. sh is the same table keyed on the client address
// (Key.Client): client affinity, at the price that one big client lands on
// one backend.
type maglev struct {
	name   string
	client bool     // key on Key.Client instead of Key.Flow
	ids    []uint32 // by index in table
	table  []uint16 // M slots, each an index into ids
}

// Seeds of the two hashes of a backend's identity that give its offset and
// skip. Arbitrary, but part of the table format: changing them reshuffles
// every table, and instances that must agree need the same ones.
const (
	offsetSeed = 0x6f66667365747631 // "offsetv1"
	skipSeed   = 0x736b69707631ab01 // "skipv1" and a tag
)

// free marks an unclaimed slot while the table is built; MaxCandidates
// keeps indexes below it.
const free = 0xffff

func newMaglev(name string, ws []Candidate, m uint32, client bool) *maglev {
	s := &maglev{name: name, client: client}
	if len(ws) == 0 {
		return s
	}
	if need := 100 * uint32(len(ws)); m < need {
		m = nextPrime(need)
	}
	type backend struct {
		id         uint32
		identity   string
		weight     uint64
		pos, skip  uint32
		cumulative uint64
	}
	bs := make([]backend, len(ws))
	var maxWeight uint64
	for i, c := range ws {
		b := &bs[i]
		b.id, b.weight, b.identity = c.ID, uint64(c.Weight), c.Name
		if b.identity == "" {
			// Names are printable (an address), so a leading NUL keeps an
			// ID from taking the identity of a named backend.
			b.identity = string(binary.BigEndian.AppendUint32([]byte{0}, c.ID))
		}
		maxWeight = max(maxWeight, b.weight)
	}
	// Identity order, so the turn order (and thus the table) does not
	// depend on the candidates' order; equal identities by ID.
	slices.SortFunc(bs, func(a, b backend) int {
		return cmp.Or(cmp.Compare(a.identity, b.identity), cmp.Compare(a.id, b.id))
	})
	for i := range bs {
		b := &bs[i]
		h := identityHash(b.identity)
		b.pos = uint32(mix64(h^offsetSeed) % uint64(m))
		b.skip = uint32(mix64(h^skipSeed)%uint64(m-1)) + 1
		s.ids = append(s.ids, b.id)
	}
	s.table = make([]uint16, m)
	for i := range s.table {
		s.table[i] = free
	}
	// Katran's weighted turns: each round adds a backend's weight to its
	// credit, and a full max(weight) of credit buys one slot. The heaviest
	// backend claims a slot every round, so the loop ends.
	for filled := uint32(0); filled < m; {
		for i := range bs {
			b := &bs[i]
			b.cumulative += b.weight
			if b.cumulative < maxWeight {
				continue
			}
			b.cumulative -= maxWeight
			for s.table[b.pos] != free {
				b.pos = step(b.pos, b.skip, m)
			}
			s.table[b.pos] = uint16(i)
			b.pos = step(b.pos, b.skip, m)
			if filled++; filled == m {
				break
			}
		}
	}
	return s
}

// step moves a position along a backend's permutation: (pos + skip) mod m
// for pos, skip < m, without a division.
func step(pos, skip, m uint32) uint32 {
	pos += skip // < 2m ≤ 2^25
	if pos >= m {
		pos -= m
	}
	return pos
}

// identityHash is FNV-1a (64 bits) of a backend's identity: fixed by its
// specification, so it is the same on every instance, architecture and
// Go version (unlike hash/maphash).
func identityHash(identity string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(identity))
	return h.Sum64()
}

func (s *maglev) Name() string { return s.name }

func (s *maglev) Pick(k Key) (uint32, bool) {
	if len(s.table) == 0 {
		return 0, false
	}
	h := k.Flow
	if s.client {
		h = k.Client
	}
	// The high bits of h × M pick the slot: a uniform hash gives uniform
	// slots, without the division of h mod M.
	slot, _ := bits.Mul64(h, uint64(len(s.table)))
	return s.ids[s.table[slot]], true
}
