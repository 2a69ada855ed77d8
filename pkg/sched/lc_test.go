package sched

import (
	"fmt"
	"sync/atomic"
	"testing"
)

func withActive(weights []int, active []int64) []Candidate {
	cs := cands(weights...)
	for i := range cs {
		if active[i] >= 0 {
			cs[i].Active = new(atomic.Int64)
			cs[i].Active.Store(active[i])
		}
	}
	return cs
}

func TestLeastConn(t *testing.T) {
	for _, tc := range []struct {
		weights []int
		active  []int64 // -1: no counter (counts as 0)
		want    []int   // picks per candidate over len(weights)×2 picks
	}{
		{[]int{1, 1, 1}, []int64{5, 2, 9}, []int{0, 6, 0}},
		{[]int{1, 1, 1}, []int64{0, 0, 0}, []int{2, 2, 2}},            // ties: round robin
		{[]int{1, 1, 1}, []int64{-1, 3, -1}, []int{3, 0, 3}},          // nil = 0, ties rotate
		{[]int{1, 3}, []int64{10, 20}, []int{0, 4}},                   // 20/3 < 10/1
		{[]int{1, 3}, []int64{10, 40}, []int{4, 0}},                   // 40/3 > 10/1
		{[]int{2, 4, 0}, []int64{5, 10, 0}, []int{2, 2, 0}},           // equal ratios: rotate; drained never
		{[]int{1, 1, 1, 1}, []int64{1, 0, 0, 1}, []int{0, 4, 4, 0}},   // ties among the least only
		{[]int{1, 1}, []int64{-7, 0}, []int{2, 2}},                    // negative counts as 0
		{[]int{MaxWeight, 1}, []int64{1 << 40, 1 << 24}, []int{0, 4}}, // no overflow
	} {
		t.Run(fmt.Sprint(tc.weights, tc.active), func(t *testing.T) {
			s := mustNew(t, "lc", withActive(tc.weights, tc.active), nil)
			count := make([]int, len(tc.weights))
			n := 0
			for _, w := range tc.weights {
				if w > 0 {
					n += 2
				}
			}
			for range n {
				id, _ := s.Pick(Key{})
				count[id-1]++
			}
			if fmt.Sprint(count) != fmt.Sprint(tc.want) {
				t.Fatalf("picks %v, want %v", count, tc.want)
			}
		})
	}
}

// Connections that stay open end up spread in proportion to weight.
func TestLeastConnConverges(t *testing.T) {
	cs := withActive([]int{1, 2, 5}, []int64{0, 0, 0})
	s := mustNew(t, "lc", cs, nil)
	for range 800 {
		id, _ := s.Pick(Key{})
		cs[id-1].Active.Add(1)
	}
	for i, want := range []int64{100, 200, 500} {
		if got := cs[i].Active.Load(); got < want-1 || got > want+1 {
			t.Fatalf("candidate %d holds %d, want %d±1", i, got, want)
		}
	}
}
