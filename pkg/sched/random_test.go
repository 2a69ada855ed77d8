package sched

import (
	"fmt"
	"math"
	"testing"
)

// With no counters (all loads equal) the first draw wins: picks follow the
// weights. 100k picks from the fixed zero state; each share within ±5 % of
// its expectation (the smallest share, 10 %, has σ ≈ 0.95 %, so ±5 % is
// over 5σ) and a chi-square under 16.27, the 0.1 % critical value for 3
// degrees of freedom.
func TestRandomSpread(t *testing.T) {
	weights := []int{1, 2, 3, 4}
	const n = 100_000
	count := spread(mustNew(t, "random", cands(weights...), nil), keys(n, 4))
	chi := 0.0
	for i, w := range weights {
		want := float64(n*w) / 10
		got := float64(count[uint32(i+1)])
		if math.Abs(got-want) > 0.05*want {
			t.Errorf("candidate %d: %v picks, want %v ± 5 %%", i+1, got, want)
		}
		chi += (got - want) * (got - want) / want
	}
	if chi > 16.27 {
		t.Errorf("chi-square %.2f over 3 degrees of freedom", chi)
	}
	t.Logf("spread %v, chi-square %.2f", count, chi)
}

// The less loaded of the two draws wins, load meaning active per weight.
func TestRandomTwoChoices(t *testing.T) {
	for _, tc := range []struct {
		weights []int
		active  []int64
		wantB   float64 // expected share of candidate 2
	}{
		// B wins unless both draws are A: 1 - 1/2².
		{[]int{1, 1}, []int64{100, 0}, 0.75},
		// 30/4 < 10/1: B wins unless both draws are A, 1 - (1/5)².
		{[]int{1, 4}, []int64{10, 30}, 0.96},
		// 50/4 > 10/1: A wins unless both draws are B, (4/5)².
		{[]int{1, 4}, []int64{10, 50}, 0.64},
	} {
		t.Run(fmt.Sprint(tc.weights, tc.active), func(t *testing.T) {
			const n = 100_000
			count := spread(mustNew(t, "random", withActive(tc.weights, tc.active), nil), keys(n, 5))
			// σ ≤ 0.16 %: ±1 % is over 6σ.
			if got := float64(count[2]) / n; math.Abs(got-tc.wantB) > 0.01 {
				t.Fatalf("share of B %.4f, want %.2f ± 0.01", got, tc.wantB)
			}
		})
	}
}

// Connections that stay open: two choices keep the backends within a few
// connections of each other (one random choice would spread them by about
// ±3σ = ±90 here).
func TestRandomBalances(t *testing.T) {
	cs := withActive([]int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, make([]int64, 10))
	s := mustNew(t, "random", cs, nil)
	for range 10_000 {
		id, _ := s.Pick(Key{})
		cs[id-1].Active.Add(1)
	}
	lo, hi := int64(math.MaxInt64), int64(0)
	for _, c := range cs {
		lo, hi = min(lo, c.Active.Load()), max(hi, c.Active.Load())
	}
	if hi-lo > 6 {
		t.Fatalf("active from %d to %d", lo, hi)
	}
	t.Logf("active from %d to %d", lo, hi)
}
