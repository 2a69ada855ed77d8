package main

import (
	"encoding/binary"
	"io"
)

// stream is a deterministic byte stream: the byte at offset o is byte o%8
// (little endian) of word(o/8). Every word is computed from the seed and its
// index alone, so any slice of the stream can be produced or checked without
// generating what precedes it, and a segment delivered at the wrong offset
// (duplicated, reordered or shifted by a broken NAT) never matches.
//
// The word function is the SplitMix64 output mixer (Steele, Lea, Flood,
// "Fast Splittable Pseudorandom Number Generators", OOPSLA 2014; constants
// from Vigna's splitmix64.c). It costs two multiplications per 8 bytes, which
// is several GB/s on one core: the generator is never the bottleneck of a
// transfer test.
type stream struct {
	seed uint64
}

// golden is 2^64 divided by the golden ratio, the SplitMix64 increment.
const golden = 0x9e3779b97f4a7c15

func (s stream) word(i uint64) uint64 {
	z := s.seed + (i+1)*golden
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// fill writes the stream bytes [off, off+len(p)) into p.
func (s stream) fill(p []byte, off uint64) {
	var tmp [8]byte
	i := off / 8
	if r := off % 8; r != 0 {
		binary.LittleEndian.PutUint64(tmp[:], s.word(i))
		n := copy(p, tmp[r:])
		p = p[n:]
		i++
	}
	for len(p) >= 8 {
		binary.LittleEndian.PutUint64(p, s.word(i))
		p = p[8:]
		i++
	}
	if len(p) > 0 {
		binary.LittleEndian.PutUint64(tmp[:], s.word(i))
		copy(p, tmp[:])
	}
}

// verify compares p with the stream bytes [off, off+len(p)) and returns the
// index in p of the first byte that differs, or -1 if all match.
func (s stream) verify(p []byte, off uint64) int {
	var tmp [8]byte
	pos := 0
	i := off / 8
	if r := off % 8; r != 0 {
		binary.LittleEndian.PutUint64(tmp[:], s.word(i))
		for j := r; j < 8 && pos < len(p); j++ {
			if p[pos] != tmp[j] {
				return pos
			}
			pos++
		}
		i++
	}
	for len(p)-pos >= 8 {
		if binary.LittleEndian.Uint64(p[pos:]) != s.word(i) {
			binary.LittleEndian.PutUint64(tmp[:], s.word(i))
			for j := range 8 {
				if p[pos+j] != tmp[j] {
					return pos + j
				}
			}
		}
		pos += 8
		i++
	}
	if pos < len(p) {
		binary.LittleEndian.PutUint64(tmp[:], s.word(i))
		for j := 0; pos < len(p); j++ {
			if p[pos] != tmp[j] {
				return pos
			}
			pos++
		}
	}
	return -1
}

// streamReader yields the first n bytes of the stream; it lets an upload body or a
// hash be fed from the stream without holding it in memory.
type streamReader struct {
	s   stream
	off uint64
	n   uint64
}

func (r *streamReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	if rem := r.n - r.off; uint64(len(p)) > rem {
		p = p[:rem]
	}
	r.s.fill(p, r.off)
	r.off += uint64(len(p))
	return len(p), nil
}
