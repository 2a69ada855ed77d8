package main

import (
	"math"
	"math/bits"
	"time"
)

// histogram counts durations in log-linear buckets, as HdrHistogram does:
// values below 2^subBits ns are exact, larger ones fall in buckets of
// relative width 2^-(subBits-1), so a percentile read from it is at most
// 0.8 % above the true sample (subBits 8: 128 buckets per power of two).
// Memory is fixed (about 59 KiB) whatever the number of samples, so a worker
// records millions of connections without growing, and histograms of several
// workers merge by adding counts.
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
	sum    uint64 // ns; overflows only after 584 years of latency
	min    uint64
	max    uint64
}

const (
	subBits     = 8
	subCount    = 1 << (subBits - 1) // buckets per power of two above 2^subBits
	histBuckets = (64-subBits+1)*subCount + subCount
)

// bucketOf returns the bucket index of v ns. Values below 2^subBits have
// their own bucket; above, the index is the power of two (shift) and the
// subBits leading bits of v.
func bucketOf(v uint64) int {
	shift := bits.Len64(v) - subBits
	if shift <= 0 {
		return int(v)
	}
	return shift*subCount + int(v>>uint(shift))
}

// bucketHigh is the largest value that falls in bucket i.
func bucketHigh(i int) uint64 {
	if i < 2*subCount {
		return uint64(i)
	}
	shift := i/subCount - 1
	sub := uint64(i - shift*subCount)
	return (sub+1)<<uint(shift) - 1
}

// record adds one duration; negative ones count as 0.
func (h *histogram) record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[bucketOf(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	h.max = max(h.max, v)
	h.n++
	h.sum += v
}

// merge adds the counts of o.
func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// quantile returns the nearest-rank q-quantile (0 < q <= 1): the smallest
// recorded value v such that at least q of the samples are <= v, rounded up
// to its bucket's upper bound and capped at the maximum. 0 if empty.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(max(bucketHigh(i), h.min), h.max))
		}
	}
	return time.Duration(h.max)
}

// mean is the exact average; 0 if empty.
func (h *histogram) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / h.n)
}
