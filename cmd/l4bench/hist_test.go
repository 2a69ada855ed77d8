package main

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketBounds(t *testing.T) {
	for _, tc := range []struct {
		v    uint64
		want int
	}{
		{0, 0}, {1, 1}, {255, 255}, {256, 256}, {257, 256}, {258, 257}, {511, 383}, {512, 384},
		{1<<63 + 1<<62, histBuckets - 64}, {^uint64(0), histBuckets - 1},
	} {
		if got := bucketOf(tc.v); got != tc.want {
			t.Errorf("bucketOf(%d) = %d, want %d", tc.v, got, tc.want)
		}
	}
	// Every bucket's upper bound falls in that bucket, and the next value in
	// the next one: the buckets tile the whole range with no gap.
	for i := 0; i < histBuckets-1; i++ {
		hi := bucketHigh(i)
		if bucketOf(hi) != i || bucketOf(hi+1) != i+1 {
			t.Fatalf("bucket %d: high %d is in %d, high+1 in %d", i, hi, bucketOf(hi), bucketOf(hi+1))
		}
	}
	if bucketHigh(histBuckets-1) != ^uint64(0) {
		t.Fatalf("last bucket ends at %d", bucketHigh(histBuckets-1))
	}
}

// exactQuantile is the nearest-rank quantile of sorted values: the oracle.
func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	rank := int(float64(len(sorted))*q + 0.999999999)
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

func TestQuantileAgainstSort(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name string
		n    int
		gen  func() time.Duration
	}{
		{"uniform 0-10ms", 10000, func() time.Duration { return time.Duration(r.Int64N(int64(10 * time.Millisecond))) }},
		{"exponential 2ms", 50000, func() time.Duration { return time.Duration(r.ExpFloat64() * float64(2*time.Millisecond)) }},
		{"bimodal with 1-3s stalls", 20000, func() time.Duration {
			if r.IntN(50) == 0 {
				return time.Second + time.Duration(r.Int64N(int64(2*time.Second)))
			}
			return 300*time.Microsecond + time.Duration(r.Int64N(int64(time.Millisecond)))
		}},
		{"tiny exact values", 1000, func() time.Duration { return time.Duration(r.IntN(200)) }},
		{"one sample", 1, func() time.Duration { return 1234567 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h histogram
			vals := make([]time.Duration, tc.n)
			for i := range vals {
				vals[i] = tc.gen()
				h.record(vals[i])
			}
			slices.Sort(vals)
			for _, q := range []float64{0.001, 0.5, 0.9, 0.99, 0.999, 1} {
				exact := exactQuantile(vals, q)
				got := h.quantile(q)
				// At or above the true value, by at most one bucket: 1/128.
				if got < exact || float64(got-exact) > float64(exact)/128+1 {
					t.Errorf("q %v: got %v, exact %v", q, got, exact)
				}
			}
			if h.quantile(1) != vals[len(vals)-1] || time.Duration(h.max) != vals[len(vals)-1] {
				t.Errorf("max: quantile(1) %v, max %v, want %v", h.quantile(1), time.Duration(h.max), vals[len(vals)-1])
			}
			var sum time.Duration
			for _, v := range vals {
				sum += v
			}
			if want := sum / time.Duration(len(vals)); h.mean() != want {
				t.Errorf("mean %v, want %v", h.mean(), want)
			}
		})
	}
}

func TestHistogramMergeAndEmpty(t *testing.T) {
	var empty histogram
	if empty.quantile(0.5) != 0 || empty.mean() != 0 {
		t.Fatal("empty histogram is not zero")
	}
	var a, b, all histogram
	for i := 1; i <= 1000; i++ {
		d := time.Duration(i) * time.Microsecond
		all.record(d)
		if i%3 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	a.merge(&empty)
	a.merge(&b)
	if a.n != all.n || a.sum != all.sum || a.min != all.min || a.max != all.max || a.counts != all.counts {
		t.Fatalf("merged: n %d sum %d min %d max %d, want %d %d %d %d", a.n, a.sum, a.min, a.max, all.n, all.sum, all.min, all.max)
	}
	empty.merge(&all)
	if empty.quantile(0.5) != all.quantile(0.5) || empty.min != all.min {
		t.Fatal("merge into an empty histogram")
	}
	var neg histogram
	neg.record(-time.Second)
	if neg.quantile(1) != 0 {
		t.Fatal("negative duration not recorded as 0")
	}
}

func TestHistogramAllocs(t *testing.T) {
	var h histogram
	if n := testing.AllocsPerRun(1000, func() { h.record(1500 * time.Microsecond) }); n != 0 {
		t.Fatalf("record allocates %v", n)
	}
}
