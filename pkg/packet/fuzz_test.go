package packet

import (
	"testing"
)

func fuzzSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	for _, s := range []segment{
		{src: [4]byte{198, 18, 0, 10}, dst: [4]byte{198, 18, 0, 100}, sport: 40000, dport: 80, flags: TCPFlagSYN, seq: 1, tcpOptions: true},
		{src: [4]byte{198, 18, 0, 21}, dst: [4]byte{198, 18, 0, 2}, sport: 8080, dport: 61000, flags: TCPFlagSYN | TCPFlagACK, ipOptions: true},
		{src: [4]byte{198, 18, 0, 10}, dst: [4]byte{198, 18, 0, 100}, sport: 40000, dport: 80, flags: TCPFlagACK | TCPFlagPSH, payload: []byte("GET / HTTP/1.1\r\n\r\n")},
		{src: [4]byte{198, 18, 0, 10}, dst: [4]byte{198, 18, 0, 100}, sport: 40000, dport: 80, flags: TCPFlagFIN | TCPFlagACK, payload: make([]byte, 1999)},
	} {
		raw := build(f, s)
		seeds = append(seeds, raw, withVnet(raw, true), withVnet(raw, false))
	}
	return seeds
}

// FuzzParse: any input is either refused with a reason or yields views that
// lie inside the buffer and agree with each other.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, len(s) > 0 && s[0] <= 1)
	}
	f.Fuzz(func(t *testing.T, b []byte, vnet bool) {
		var fr Frame
		r := fr.Parse(b, vnet)
		if r >= NumReasons {
			t.Fatalf("reason %d out of range", r)
		}
		if r != OK {
			return
		}
		if fr.Len() > len(b) || fr.L4Off+len(fr.TCP) != len(fr.Eth) || len(fr.TCP) < fr.TCP.DataOffset() || fr.TCP.DataOffset() < TCPMinLen {
			t.Fatalf("inconsistent views: len %d l4off %d eth %d tcp %d", fr.Len(), fr.L4Off, len(fr.Eth), len(fr.TCP))
		}
		_ = fr.Payload()
		_ = fr.SegLen()
		_ = fr.Tuple()
	})
}

// FuzzRewrite: NAT and back restores the frame byte for byte, and a rewrite of
// a frame whose checksums were right leaves them right.
func FuzzRewrite(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, len(s) > 0 && s[0] <= 1, uint32(0xc6120015), uint32(0xc6120002), uint16(8080), uint16(61000))
	}
	f.Fuzz(func(t *testing.T, b []byte, vnet bool, src, dst uint32, sport, dport uint16) {
		var fr Frame
		if fr.Parse(b, vnet) != OK {
			return
		}
		validIP := fr.IP.Checksum() == fr.IP.CalculateChecksum()
		var validTCP bool
		if fr.Partial() {
			validTCP = fr.TCP.Checksum() == PseudoSum(fr.IP.Src(), fr.IP.Dst(), ProtocolTCP, uint16(len(fr.TCP)))
		} else {
			validTCP = fr.TCP.Checksum() == fr.TCP.CalculateChecksum(fr.IP.Src(), fr.IP.Dst())
		}
		before := append([]byte(nil), b...)
		orig := fr.Tuple()
		nt := Tuple4{SrcPort: sport, DstPort: dport}
		nt.Src = [4]byte{byte(src >> 24), byte(src >> 16), byte(src >> 8), byte(src)}
		nt.Dst = [4]byte{byte(dst >> 24), byte(dst >> 16), byte(dst >> 8), byte(dst)}
		fr.Rewrite(nt)
		if validIP && validTCP {
			checkSums(t, &fr)
		}
		fr.Rewrite(orig)
		if validIP && validTCP && string(b) != string(before) {
			t.Fatalf("round trip changed a valid frame")
		}
	})
}

func BenchmarkParse(b *testing.B) {
	raw := withVnet(build(b, segment{src: [4]byte{198, 18, 0, 10}, dst: [4]byte{198, 18, 0, 100}, sport: 1, dport: 80, flags: TCPFlagACK, payload: make([]byte, 1400), tcpOptions: true}), true)
	var f Frame
	b.ReportAllocs()
	for b.Loop() {
		if f.Parse(raw, true) != OK {
			b.Fatal("parse")
		}
	}
}

func BenchmarkRewrite(b *testing.B) {
	raw := withVnet(build(b, segment{src: [4]byte{198, 18, 0, 10}, dst: [4]byte{198, 18, 0, 100}, sport: 1, dport: 80, flags: TCPFlagACK, payload: make([]byte, 1400)}), false)
	var f Frame
	f.Parse(raw, true)
	t1 := Tuple4{[4]byte{198, 18, 0, 2}, [4]byte{198, 18, 0, 21}, 61000, 8080}
	t0 := f.Tuple()
	b.ReportAllocs()
	for b.Loop() {
		f.Rewrite(t1)
		f.Rewrite(t0)
	}
}

func BenchmarkSum64K(b *testing.B) {
	buf := make([]byte, 65536)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		Sum(buf, 0)
	}
}
