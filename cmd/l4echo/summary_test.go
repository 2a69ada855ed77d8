package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		d := make([]time.Duration, len(v))
		for i, x := range v {
			d[i] = time.Duration(x) * time.Millisecond
		}
		return d
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"median of 4 is the 2nd", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"median of 5 is the 3rd", ms(1, 2, 3, 4, 5), 50, 3 * time.Millisecond},
		{"p99 of 100", ms(hundred...), 99, 99 * time.Millisecond},
		{"p99 of 10 is the max", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
		{"p100 is the max", ms(1, 5, 9), 100, 9 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := percentile(tt.sorted, tt.p); got != tt.want {
			t.Errorf("%s: percentile(p%v) = %v, want %v", tt.name, tt.p, got, tt.want)
		}
	}
}

func TestClassify(t *testing.T) {
	op := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", err)}
	}
	tests := []struct {
		err  error
		want string
	}{
		{nil, kindOK},
		{op(syscall.ECONNREFUSED), kindRefused},
		{op(syscall.ECONNRESET), kindReset},
		{fmt.Errorf("write body: %w", op(syscall.EPIPE)), kindReset},
		{op(syscall.ETIMEDOUT), kindTimeout},
		{fmt.Errorf("read response: %w", os.ErrDeadlineExceeded), kindTimeout},
		{op(syscall.EHOSTUNREACH), kindOther},
		{errors.New("http status \"503\""), kindOther},
	}
	for _, tt := range tests {
		if got := classify(tt.err); got != tt.want {
			t.Errorf("classify(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	refused := &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	ok := func(be, remote string, lat int) getResult {
		return getResult{kind: kindOK, backend: be, remote: remote, latency: time.Duration(lat) * time.Millisecond}
	}
	results := []getResult{
		ok("be1", "198.18.0.2:40001", 1),
		ok("be2", "198.18.0.2:40002", 2),
		ok("be1", "198.18.0.2:40001", 3), // a port reused: one distinct remote less
		ok("", "", 4),
		ok("be3", "[2001:db8::1]:5", 5),
		{kind: kindRefused, err: refused},
		{kind: kindRefused, err: refused},
		{kind: kindTimeout, err: os.ErrDeadlineExceeded},
		{kind: kindReset, err: syscall.ECONNRESET},
		{kind: kindOther, err: errors.New("boom")},
	}
	s := summarize("http://198.18.0.100:80/", results, 1500*time.Millisecond)
	want := summary{
		URL: "http://198.18.0.100:80/", Count: 10, OK: 5,
		Errors:          errorCounts{Refused: 2, Reset: 1, Timeout: 1, Other: 1},
		Backends:        map[string]int{"be1": 2, "be2": 1, "be3": 1, noBackend: 1},
		RemoteIPs:       map[string]int{"198.18.0.2": 3, "2001:db8::1": 1},
		DistinctRemotes: 3,
		Latency:         latencyMS{P50: 3, P99: 5, Max: 5},
		Seconds:         1.5,
		ErrorSamples:    []string{refused.Error(), os.ErrDeadlineExceeded.Error(), syscall.ECONNRESET.Error(), "boom"},
	}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("summary\n got %+v\nwant %+v", s, want)
	}

	out, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(out, &generic); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"url", "count", "ok", "errors", "backends", "remote_ips", "distinct_remotes", "latency_ms", "seconds"} {
		if _, ok := generic[k]; !ok {
			t.Errorf("JSON summary has no %q: %s", k, out)
		}
	}
	text := s.text()
	for _, w := range []string{"10 requests", "5 ok, 5 failed", "refused 2", "be1 2, be2 1, be3 1", "198.18.0.2 3", "p50 3.00 ms", "error: boom"} {
		if !strings.Contains(text, w) {
			t.Errorf("text summary lacks %q:\n%s", w, text)
		}
	}
}

func TestSummarizeAllOK(t *testing.T) {
	s := summarize("u", []getResult{{kind: kindOK, backend: "be1", remote: "198.18.0.10:1"}}, time.Second)
	if s.OK != s.Count || s.ErrorSamples != nil || s.Errors != (errorCounts{}) {
		t.Fatalf("all-ok summary: %+v", s)
	}
}
