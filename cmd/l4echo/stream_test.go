package main

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
)

// TestStreamKnownAnswer pins the word function to SplitMix64: with seed 0 the
// words are the first outputs of splitmix64.c seeded with 0.
func TestStreamKnownAnswer(t *testing.T) {
	want := []uint64{0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, 0x06c45d188009454f}
	s := stream{seed: 0}
	p := make([]byte, 8*len(want))
	s.fill(p, 0)
	for i, w := range want {
		if got := binary.LittleEndian.Uint64(p[8*i:]); got != w {
			t.Errorf("word %d = %#x, want %#x", i, got, w)
		}
	}
}

func TestStreamFillAnyOffset(t *testing.T) {
	s := stream{seed: 42}
	whole := make([]byte, 4096)
	s.fill(whole, 0)
	tests := []struct {
		name     string
		off, len int
	}{
		{"empty", 5, 0},
		{"aligned word", 8, 8},
		{"aligned long", 64, 1000},
		{"unaligned start", 3, 100},
		{"unaligned both", 13, 27},
		{"inside one word", 9, 5},
		{"one byte", 7, 1},
		{"tail only", 4000, 96},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := make([]byte, tt.len)
			s.fill(p, uint64(tt.off))
			if !bytes.Equal(p, whole[tt.off:tt.off+tt.len]) {
				t.Fatalf("fill(%d, %d) differs from the whole stream", tt.off, tt.len)
			}
			if i := s.verify(p, uint64(tt.off)); i != -1 {
				t.Fatalf("verify of correct bytes at %d: mismatch at %d", tt.off, i)
			}
		})
	}
}

func TestStreamVerifyFindsFirstMismatch(t *testing.T) {
	s := stream{seed: 7}
	for _, off := range []uint64{0, 1, 5, 8, 1 << 33} {
		p := make([]byte, 67)
		s.fill(p, off)
		for i := range p {
			q := bytes.Clone(p)
			q[i] ^= 0x01
			if len(q) > i+3 {
				q[i+3] ^= 0x80 // a later error must not hide the first
			}
			if got := s.verify(q, off); got != i {
				t.Fatalf("offset %d: flipped byte %d, verify says %d", off, i, got)
			}
		}
	}
}

func TestStreamShiftedSegmentDetected(t *testing.T) {
	s := stream{seed: 1}
	p := make([]byte, 1500)
	s.fill(p, 1448) // the right bytes at the wrong offset (a duplicated segment)
	if s.verify(p, 0) == -1 {
		t.Fatal("a segment at the wrong offset verified")
	}
}

func TestStreamSeedsDiffer(t *testing.T) {
	a, b := make([]byte, 64), make([]byte, 64)
	stream{seed: 1}.fill(a, 0)
	stream{seed: 2}.fill(b, 0)
	if bytes.Equal(a, b) {
		t.Fatal("seeds 1 and 2 give the same bytes")
	}
}

func TestStreamReader(t *testing.T) {
	got, err := io.ReadAll(&streamReader{s: stream{seed: 3}, n: 100003})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 100003)
	stream{seed: 3}.fill(want, 0)
	if !bytes.Equal(got, want) {
		t.Fatal("reader differs from fill")
	}
}

func BenchmarkStreamFill(b *testing.B) {
	p := make([]byte, chunkSize)
	s := stream{seed: 1}
	b.SetBytes(int64(len(p)))
	for i := 0; b.Loop(); i++ {
		s.fill(p, uint64(i)*chunkSize)
	}
}

func BenchmarkStreamVerify(b *testing.B) {
	p := make([]byte, chunkSize)
	s := stream{seed: 1}
	s.fill(p, 0)
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		if s.verify(p, 0) != -1 {
			b.Fatal("mismatch")
		}
	}
}
