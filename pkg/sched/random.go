package sched

import "sync/atomic"

// random is the power of two random choices (HAProxy's random(2); Mitzenmacher,
// "The Power of Two Choices in Randomized Load Balancing", 2001): draw two
// candidates at random, in proportion to weight, and take the one with
// fewer active connections per unit of weight (the first drawn on a tie).
// Two draws avoid lc's herd on the least loaded backend when counts lag
// behind, yet keep most of its balance; the draws may be the same backend.
//
// The random numbers come from SplitMix64 (Steele, Lea and Flood, OOPSLA
// 2014) over an atomic counter: concurrency-safe without a lock, no
// allocation, and deterministic from a zero state, which the tests use.
type random struct {
	ids    []uint32
	cum    []uint32 // cum[i]: sum of the weights of candidates 0..i
	weight []int64
	active []*atomic.Int64
	state  *atomic.Uint64
	zero   atomic.Int64 // stands in for a nil Active; never written
}

// golden is SplitMix64's increment, 2^64 divided by the golden ratio.
const golden = 0x9e3779b97f4a7c15

func newRandom(ws []Candidate, prev Scheduler) *random {
	s := &random{}
	if p, ok := prev.(*random); ok {
		s.state = p.state
	} else {
		s.state = new(atomic.Uint64)
	}
	var sum uint32 // at most MaxCandidates × MaxWeight < 2^32
	for _, c := range ws {
		sum += uint32(c.Weight)
		s.ids = append(s.ids, c.ID)
		s.cum = append(s.cum, sum)
		s.weight = append(s.weight, int64(c.Weight))
	}
	s.active = actives(ws, &s.zero)
	return s
}

func (s *random) Name() string { return "random" }

func (s *random) Pick(Key) (uint32, bool) {
	if len(s.ids) == 0 {
		return 0, false
	}
	r := mix64(s.state.Add(golden))
	a, b := s.draw(uint32(r)), s.draw(uint32(r>>32))
	// Fewer active per weight: b/wb < a/wa, cross-multiplied (see lc).
	if load(s.active[b])*s.weight[a] < load(s.active[a])*s.weight[b] {
		a = b
	}
	return s.ids[a], true
}

// draw maps a 32-bit random number to a candidate with probability weight/sum:
// the number scales to a point in [0, sum) (Lemire's multiply-shift, no
// division) and a binary search finds the first cumulative weight above it.
func (s *random) draw(x uint32) int {
	total := s.cum[len(s.cum)-1]
	p := uint32((uint64(x) * uint64(total)) >> 32)
	// Binary search for the first cum[i] > p, without a branch on the
	// comparison: random points would mispredict it half the time.
	base, n := 0, len(s.cum)
	for n > 1 {
		half := n / 2
		// All ones when cum ≤ p (the difference is not negative), else 0.
		ge := int(^((int64(p) - int64(s.cum[base+half-1])) >> 63))
		base += half & ge
		n -= half
	}
	return base
}

// mix64 is SplitMix64's output function (the MurmurHash3 fmix64 variant
// "Mix13" by David Stafford): a bijection that spreads every input bit.
func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}
