package sched

import "testing"

func TestRoundRobin(t *testing.T) {
	s, err := New("rr", []Candidate{{1, 1}, {2, 1}, {3, 0}, {4, 5}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	count := map[uint32]int{}
	for i := 0; i < 300; i++ {
		id, ok := s.Pick(uint64(i))
		if !ok {
			t.Fatal("no pick")
		}
		count[id]++
	}
	if count[1] != 100 || count[2] != 100 || count[4] != 100 || count[3] != 0 {
		t.Fatalf("spread %v", count)
	}
	// A rebuilt set continues the rotation instead of starting over.
	first, _ := s.Pick(0) // 1
	s2, _ := New("rr", []Candidate{{1, 1}, {2, 1}, {4, 1}}, s)
	if id, _ := s2.Pick(0); id == first {
		t.Fatalf("rotation restarted: %d", id)
	}
}

func TestEmpty(t *testing.T) {
	for _, c := range [][]Candidate{nil, {{1, 0}}} {
		s, _ := New("rr", c, nil)
		if _, ok := s.Pick(0); ok {
			t.Fatal("picked from an empty set")
		}
	}
	if _, err := New("nope", nil, nil); err == nil {
		t.Fatal("unknown scheduler accepted")
	}
}

func TestPickAllocs(t *testing.T) {
	s, _ := New("rr", []Candidate{{1, 1}, {2, 1}}, nil)
	if n := testing.AllocsPerRun(1000, func() { s.Pick(1) }); n != 0 {
		t.Fatalf("%v allocs", n)
	}
}
