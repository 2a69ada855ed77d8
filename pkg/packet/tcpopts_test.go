package packet

import (
	"math/rand/v2"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

func TestTimestampRewrite(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	layouts := [][]layers.TCPOption{
		{{OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: make([]byte, 8)}},
		// MSS, SACK-permitted, TS, NOP, wscale: Linux's SYN layout.
		{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{5, 0xb4}}, {OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
			{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: make([]byte, 8)}, {OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}}},
		// A TS option at an odd offset.
		{{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}}, {OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: make([]byte, 8)}, {OptionType: layers.TCPOptionKindNop}},
	}
	for i, opts := range layouts {
		for k := 0; k < 200; k++ {
			s := randSegment(r)
			s.tcpOptions = false
			raw := buildWithOptions(t, s, opts)
			var f Frame
			if f.Parse(raw, false) != OK {
				t.Fatal("parse")
			}
			off, ok := f.TCP.TimestampOffset()
			if !ok {
				t.Fatalf("layout %d: no timestamp found", i)
			}
			v, e := r.Uint32(), r.Uint32()
			f.TCP.SetUint32Csum(off, v, false)
			f.TCP.SetUint32Csum(off+4, e, false)
			if f.TCP.TSval(off) != v || f.TCP.TSecr(off) != e {
				t.Fatal("values")
			}
			checkSums(t, &f)
		}
	}
	// No options, or options without a timestamp.
	raw := build(t, segment{src: [4]byte{1, 2, 3, 4}, dst: [4]byte{5, 6, 7, 8}, sport: 1, dport: 2, flags: TCPFlagSYN, tcpOptions: true})
	var f Frame
	f.Parse(raw, false)
	if _, ok := f.TCP.TimestampOffset(); ok {
		t.Fatal("timestamp found where there is none")
	}
	// Malformed option lists end the walk.
	for _, opts := range [][]byte{{8, 10, 1, 2}, {8, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, {3, 0, 0, 0}, {3, 40, 0, 0}, {0, 8, 10}} {
		tcp := make(TCP, 20+len(opts)+3&^3)
		copy(tcp[20:], opts)
		tcp.SetDataOffset(len(tcp))
		if _, ok := tcp.TimestampOffset(); ok {
			t.Fatalf("%x: timestamp reported", opts)
		}
	}
}

func FuzzTimestampOffset(f *testing.F) {
	f.Add([]byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2})
	f.Fuzz(func(t *testing.T, opts []byte) {
		if len(opts) > 40 {
			opts = opts[:40]
		}
		tcp := make(TCP, 20+(len(opts)+3)&^3)
		copy(tcp[20:], opts)
		tcp.SetDataOffset(len(tcp))
		if off, ok := tcp.TimestampOffset(); ok {
			if off < 22 || off+8 > len(tcp) {
				t.Fatalf("offset %d out of the options", off)
			}
			_ = tcp.TSval(off) + tcp.TSecr(off)
		}
	})
}
