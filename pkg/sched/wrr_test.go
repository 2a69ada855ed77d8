package sched

import (
	"fmt"
	"testing"
)

func TestWRRCycle(t *testing.T) {
	for _, tc := range []struct {
		weights []int
		cycle   int   // wanted cycle length
		per     []int // wanted picks per cycle, by candidate
	}{
		{[]int{1, 1, 1}, 3, []int{1, 1, 1}},
		{[]int{5, 1, 1}, 7, []int{5, 1, 1}},
		{[]int{4, 2, 2}, 4, []int{2, 1, 1}}, // reduced by the GCD 2
		{[]int{300, 200, 100}, 6, []int{3, 2, 1}},
		{[]int{3, 0, 7}, 10, []int{3, 0, 7}},
		{[]int{1, 2, 3, 4}, 10, []int{1, 2, 3, 4}},
		{[]int{65535, 1}, 65536, []int{65535, 1}},
		// 65535 + 65534 > 65536: scaled to 32768 + 32767.
		{[]int{65535, 65534}, 65535, []int{32768, 32767}},
	} {
		t.Run(fmt.Sprint(tc.weights), func(t *testing.T) {
			s := mustNew(t, "wrr", cands(tc.weights...), nil).(*wrr)
			if len(s.seq) != tc.cycle {
				t.Fatalf("cycle of %d, want %d", len(s.seq), tc.cycle)
			}
			// Exactly per cycle, from any starting point: three cycles,
			// the first started part way.
			s.Pick(Key{})
			for c := range 3 {
				count := make([]int, len(tc.weights))
				for range tc.cycle {
					id, _ := s.Pick(Key{})
					count[id-1]++
				}
				if fmt.Sprint(count) != fmt.Sprint(tc.per) {
					t.Fatalf("cycle %d: %v, want %v", c, count, tc.per)
				}
			}
		})
	}
}

// The nginx order itself, worked out by hand from its algorithm.
func TestWRRNginxOrder(t *testing.T) {
	s := mustNew(t, "wrr", cands(5, 1, 1), nil)
	var got []uint32
	for range 7 {
		id, _ := s.Pick(Key{})
		got = append(got, id)
	}
	if fmt.Sprint(got) != "[1 1 2 1 3 1 1]" {
		t.Fatalf("order %v", got)
	}
}

// deviation returns how far, over every prefix of seq, a candidate's count
// strays from its proportional share.
func deviation(w []uint64, seq []uint16) float64 {
	var total uint64
	for _, v := range w {
		total += v
	}
	count := make([]float64, len(w))
	worst := 0.0
	for k, i := range seq {
		count[i]++
		for j, v := range w {
			d := count[j] - float64(uint64(k+1)*v)/float64(total)
			worst = max(worst, d, -d)
		}
	}
	return worst
}

// Both ways of laying out a cycle give exact counts; smooth (nginx) stays
// within one pick of the ideal over every prefix, merge within 1.5.
func TestWRRLayouts(t *testing.T) {
	sets := [][]uint64{{7, 5, 3, 2, 1, 1}, {1, 1}, {100, 1, 1, 1}, {13, 17, 19, 23, 29}}
	big := make([]uint64, 300) // 300 × ~60000 steps: over smoothBudget
	for i := range big {
		big[i] = uint64(1 + i*397%400)
	}
	sets = append(sets, big)
	for _, w := range sets {
		var total uint64
		for _, v := range w {
			total += v
		}
		layouts := map[string][]uint16{"merge": merge(w, total)}
		if total*uint64(len(w)) <= smoothBudget {
			layouts["smooth"] = smooth(w, total)
		} else if len(cycle(w)) != int(total) {
			t.Fatal("cycle of a large set")
		}
		for name, seq := range layouts {
			count := make([]uint64, len(w))
			for _, i := range seq {
				count[i]++
			}
			if fmt.Sprint(count) != fmt.Sprint(w) {
				t.Fatalf("%s over %d weights: counts differ", name, len(w))
			}
			limit := 1.0
			if name == "merge" {
				limit = 1.5
			}
			if d := deviation(w, seq); d > limit+1e-9 {
				t.Fatalf("%s over %d weights: deviation %.3f > %.1f", name, len(w), d, limit)
			}
		}
	}
}
