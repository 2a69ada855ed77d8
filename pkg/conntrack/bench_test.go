package conntrack

import (
	"runtime"
	"testing"
	"unsafe"
)

func TestEntrySize(t *testing.T) {
	// 120 bytes of entry plus about 4 bytes of index per flow: the 128-byte budget.
	if s := unsafe.Sizeof(entry{}); s > 120 {
		t.Fatalf("entry is %d bytes", s)
	}
}

func TestTrackAllocs(t *testing.T) {
	tb := New(Config{MaxConns: 1000, Timeouts: testTimeouts})
	f := insert(t, tb, 1, 0)
	var out Flow
	if n := testing.AllocsPerRun(1000, func() {
		tb.Track(&f.Orig, Orig, ACK, 5, &out)
		tb.Track(&f.Reply, Reply, ACK, 5, &out)
	}); n != 0 {
		t.Fatalf("%v allocs per Track", n)
	}
	o, r := tuples(2)
	g := Flow{Orig: o, Reply: r}
	if n := testing.AllocsPerRun(1000, func() {
		tb.Insert(&g, 5)
		tb.Delete(&o, Orig)
	}); n != 0 {
		t.Fatalf("%v allocs per Insert+Delete", n)
	}
}

func BenchmarkTrackHit(b *testing.B) {
	tb := New(Config{MaxConns: 1 << 16, Timeouts: testTimeouts})
	var fs []Flow
	for i := 1; i <= 1<<15; i++ {
		o, r := tuples(i)
		f := Flow{Orig: o, Reply: r}
		tb.Insert(&f, 0)
		fs = append(fs, f)
	}
	var out Flow
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		f := &fs[i&(1<<15-1)]
		tb.Track(&f.Orig, Orig, ACK, 1, &out)
		i++
	}
}

func BenchmarkTrackParallel(b *testing.B) {
	tb := New(Config{MaxConns: 1 << 16, Timeouts: testTimeouts})
	var fs []Flow
	for i := 1; i <= 1<<15; i++ {
		o, r := tuples(i)
		f := Flow{Orig: o, Reply: r}
		tb.Insert(&f, 0)
		fs = append(fs, f)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var out Flow
		i := 0
		for pb.Next() {
			f := &fs[i&(1<<15-1)]
			if i&1 == 0 {
				tb.Track(&f.Orig, Orig, ACK, 1, &out)
			} else {
				tb.Track(&f.Reply, Reply, ACK, 1, &out)
			}
			i++
		}
	})
}

func BenchmarkInsertDelete(b *testing.B) {
	tb := New(Config{MaxConns: 1 << 16, Timeouts: testTimeouts})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		o, r := tuples(i & 0xffff)
		f := Flow{Orig: o, Reply: r}
		tb.Insert(&f, 0)
		tb.Delete(&o, Orig)
		i++
	}
}

// BenchmarkMemoryPerFlow fills a table with 1,000,000 connections and reports
// the heap it takes per flow (index and entries).
func BenchmarkMemoryPerFlow(b *testing.B) {
	const n = 1_000_000
	for b.Loop() {
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		tb := New(Config{MaxConns: n, Timeouts: testTimeouts})
		for i := 0; i < n; i++ {
			var f Flow
			f.Orig.Src = AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			f.Orig.SrcPort, f.Orig.DstPort, f.Orig.Proto = uint16(i), 80, 6
			f.Reply.Dst = f.Orig.Src
			f.Reply.SrcPort, f.Reply.DstPort, f.Reply.Proto = 8080, uint16(i), 6
			if tb.Insert(&f, 0) != Inserted {
				b.Fatal("insert")
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/n, "bytes/flow")
		runtime.KeepAlive(tb)
	}
}
