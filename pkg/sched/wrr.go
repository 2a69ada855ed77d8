package sched

import (
	"cmp"
	"slices"
	"sync/atomic"
)

// maxCycle caps the length of a wrr cycle (before the at most one extra
// entry per candidate that rounding adds): 64 Ki 16-bit entries, 128 KiB,
// is plenty to express weights of up to MaxWeight among tens of backends.
const maxCycle = 1 << 16

// wrr is smooth weighted round robin. nginx's algorithm updates every
// backend's running weight on each pick, which needs a lock; instead New
// runs it for one whole cycle and Pick walks the result with an atomic
// counter. Over a cycle each candidate appears exactly its weight times
// (after reducing the weights by their greatest common divisor), spread out
// rather than in runs.
type wrr struct {
	ids  []uint32
	seq  []uint16 // indexes into ids, one cycle
	next *atomic.Uint64
}

func newWRR(ws []Candidate, prev Scheduler) *wrr {
	s := &wrr{}
	if p, ok := prev.(*wrr); ok {
		s.next = p.next
	} else {
		s.next = new(atomic.Uint64)
	}
	for _, c := range ws {
		s.ids = append(s.ids, c.ID)
	}
	s.seq = cycle(cycleWeights(ws))
	return s
}

// cycleWeights returns the weights reduced by their greatest common divisor
// and, if they still sum to more than maxCycle, scaled down to sum to about
// maxCycle (each rounded down, but at least 1): a candidate's share is then
// off by less than one entry of the cycle.
func cycleWeights(ws []Candidate) []uint64 {
	w := make([]uint64, len(ws))
	reduce := func() (total uint64) {
		g := 0
		for _, v := range w {
			g = gcd(g, int(v))
		}
		for i := range w {
			w[i] /= uint64(g)
			total += w[i]
		}
		return total
	}
	for i, c := range ws {
		w[i] = uint64(c.Weight)
	}
	if len(w) == 0 {
		return w
	}
	if total := reduce(); total > maxCycle {
		for i := range w {
			w[i] = max(1, w[i]*maxCycle/total)
		}
		reduce()
	}
	return w
}

// smoothBudget bounds the steps (cycle length × candidates) of nginx's
// algorithm in New, a pause of the control plane: 2^24 steps took 65 ms on
// a busy 2-vCPU VM. Beyond, cycle uses the O(T log T) merge.
const smoothBudget = 1 << 24

// cycle returns one cycle of T = sum(w) picks in which candidate i appears
// exactly w[i] times, spread out.
func cycle(w []uint64) []uint16 {
	var total uint64
	for _, v := range w {
		total += v
	}
	if total*uint64(len(w)) <= smoothBudget {
		return smooth(w, total)
	}
	return merge(w, total)
}

// smooth is nginx's smooth weighted round robin (ngx_http_upstream_round_robin.c,
// ngx_http_upstream_get_peer) run for one cycle: each step adds every
// weight to its candidate's running weight, picks the largest (the first on
// a tie) and takes the total off it. Over every prefix of the cycle each
// candidate's count is within one of its share. It costs O(T × N).
func smooth(w []uint64, total uint64) []uint16 {
	cur := make([]int64, len(w))
	seq := make([]uint16, total)
	for k := range seq {
		best := 0
		for i, v := range w {
			cur[i] += int64(v)
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= int64(total)
		seq[k] = uint16(best)
	}
	return seq
}

// merge places candidate i's w[i] picks at the midpoints of w[i] equal
// slices of the cycle and merges them in time order (ties to the lower
// index): O(T log T), for sets too large for smooth. A candidate's count
// then strays a little further from its share over a prefix (up to 1.25
// picks measured on random weight sets, against smooth's 1).
func merge(w []uint64, total uint64) []uint16 {
	type event struct {
		i uint16 // candidate
		j uint32 // its j-th pick, at time (2j+1)/(2w[i])
	}
	ev := make([]event, 0, total)
	for i, v := range w {
		for j := uint64(0); j < v; j++ {
			ev = append(ev, event{uint16(i), uint32(j)})
		}
	}
	// (2ja+1)/(2wa) vs (2jb+1)/(2wb), cross-multiplied: j < w ≤ 2^16, so
	// the products stay below 2^34.
	slices.SortFunc(ev, func(a, b event) int {
		if c := cmp.Compare((2*uint64(a.j)+1)*w[b.i], (2*uint64(b.j)+1)*w[a.i]); c != 0 {
			return c
		}
		return cmp.Compare(a.i, b.i)
	})
	seq := make([]uint16, len(ev))
	for k, e := range ev {
		seq[k] = e.i
	}
	return seq
}

func (s *wrr) Name() string { return "wrr" }

func (s *wrr) Pick(Key) (uint32, bool) {
	if len(s.seq) == 0 {
		return 0, false
	}
	return s.ids[s.seq[(s.next.Add(1)-1)%uint64(len(s.seq))]], true
}
