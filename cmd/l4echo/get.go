package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// getResult is the outcome of one request on its own connection.
type getResult struct {
	kind    string
	err     error
	latency time.Duration
	backend string // X-Backend of the answer
	remote  string // X-Remote-Addr: the client address the backend saw
}

// bodyLimit bounds what get reads of an answer: "/" answers a name, so
// anything larger is discarded unread beyond this (1 MiB).
const bodyLimit = 1 << 20

func getOnce(ctx context.Context, e env, u *url.URL, timeout time.Duration) getResult {
	start := time.Now()
	r := getResult{}
	r.err = func() error {
		dctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		conn, err := e.dial(dctx, "tcp", u.Host)
		if err != nil {
			return err
		}
		defer conn.Close()
		defer context.AfterFunc(ctx, func() { conn.Close() })() // SIGINT or SIGTERM ends the request
		if err := conn.SetDeadline(start.Add(timeout)); err != nil {
			return err
		}
		if err := writeRequestHead(conn, "GET", u, -1); err != nil {
			return fmt.Errorf("write request: %w", err)
		}
		resp, err := readResponse(bufio.NewReader(conn), "GET")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, bodyLimit)); err != nil {
			return fmt.Errorf("read body: %w", err)
		}
		r.backend = resp.Header.Get("X-Backend")
		r.remote = resp.Header.Get("X-Remote-Addr")
		return nil
	}()
	r.latency = time.Since(start)
	r.kind = classify(r.err)
	return r
}

// errorCounts are failures by kind (see classify).
type errorCounts struct {
	Refused int `json:"refused"`
	Reset   int `json:"reset"`
	Timeout int `json:"timeout"`
	Other   int `json:"other"`
}

// latencyMS are percentiles of successful requests, in milliseconds, from
// the start of the connect to the end of the answer.
type latencyMS struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// summary is what get prints; with --json, one object on one line.
type summary struct {
	URL      string         `json:"url"`
	Count    int            `json:"count"`
	OK       int            `json:"ok"`
	Errors   errorCounts    `json:"errors"`
	Backends map[string]int `json:"backends"` // answers per X-Backend
	// RemoteIPs counts answers per client IP the backends saw: the client's
	// own address under DNAT, the balancer's under full NAT.
	RemoteIPs map[string]int `json:"remote_ips"`
	// DistinctRemotes is the number of distinct ip:port the backends saw.
	DistinctRemotes int       `json:"distinct_remotes"`
	Latency         latencyMS `json:"latency_ms"`
	Seconds         float64   `json:"seconds"`
	// ErrorSamples holds the first distinct error messages (at most
	// maxErrorSamples), to tell what went wrong without a packet capture.
	ErrorSamples []string `json:"error_samples,omitempty"`
}

const maxErrorSamples = 5

// noBackend stands for answers without an X-Backend header.
const noBackend = "(none)"

// percentile is the nearest-rank percentile of sorted values (p in (0,100]).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(float64(len(sorted))*p/100 + 0.999999)
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func summarize(u string, results []getResult, elapsed time.Duration) summary {
	s := summary{URL: u, Count: len(results), Backends: map[string]int{}, RemoteIPs: map[string]int{},
		Seconds: elapsed.Seconds()}
	var lat []time.Duration
	remotes := map[string]bool{}
	for _, r := range results {
		switch r.kind {
		case kindOK:
			s.OK++
			lat = append(lat, r.latency)
			b := r.backend
			if b == "" {
				b = noBackend
			}
			s.Backends[b]++
			if r.remote != "" {
				remotes[r.remote] = true
				ip := r.remote
				if i := strings.LastIndexByte(ip, ':'); i >= 0 {
					ip = strings.Trim(ip[:i], "[]")
				}
				s.RemoteIPs[ip]++
			}
		case kindRefused:
			s.Errors.Refused++
		case kindReset:
			s.Errors.Reset++
		case kindTimeout:
			s.Errors.Timeout++
		default:
			s.Errors.Other++
		}
		if r.err != nil && len(s.ErrorSamples) < maxErrorSamples && !slices.Contains(s.ErrorSamples, r.err.Error()) {
			s.ErrorSamples = append(s.ErrorSamples, r.err.Error())
		}
	}
	s.DistinctRemotes = len(remotes)
	slices.Sort(lat)
	s.Latency = latencyMS{P50: ms(percentile(lat, 50)), P99: ms(percentile(lat, 99)), Max: ms(percentile(lat, 100))}
	return s
}

// sortedCounts renders a count map as "k1 n1, k2 n2" in key order.
func sortedCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func (s summary) text() string {
	var b strings.Builder
	fail := s.Count - s.OK
	took := time.Duration(s.Seconds * float64(time.Second)).Round(100 * time.Microsecond)
	fmt.Fprintf(&b, "%d requests to %s: %d ok, %d failed (refused %d, reset %d, timeout %d, other %d) in %v\n",
		s.Count, s.URL, s.OK, fail, s.Errors.Refused, s.Errors.Reset, s.Errors.Timeout, s.Errors.Other, took)
	fmt.Fprintf(&b, "backends: %s\n", sortedCounts(s.Backends))
	fmt.Fprintf(&b, "client address seen by backends: %s (%d distinct ip:port)\n", sortedCounts(s.RemoteIPs), s.DistinctRemotes)
	fmt.Fprintf(&b, "latency: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", s.Latency.P50, s.Latency.P99, s.Latency.Max)
	for _, m := range s.ErrorSamples {
		fmt.Fprintf(&b, "error: %s\n", m)
	}
	return b.String()
}

func runGet(e env, args []string) int {
	fs := newFlagSet("get", "--url URL [--count N] [--parallel P] [--timeout D] [--expect-backends N] [--json]")
	rawURL := fs.String("url", "", "`URL` to request (http only)")
	count := fs.Int("count", 1, "number of requests, each on a new TCP connection")
	parallel := fs.Int("parallel", 1, "requests in flight at a time")
	timeout := fs.Duration("timeout", 2*time.Second, "bound on each request, connect to last byte")
	asJSON := fs.Bool("json", false, "print the summary as one JSON object")
	cc := fs.String("cc", "", "TCP congestion control `ALG` of this program's sockets (default: the system's)")
	expect := fs.Int("expect-backends", 0, "fail unless at least `N` distinct backends answered")
	if code, done := parseFlags(e, fs, args); done {
		return code
	}
	e = e.withCC(*cc)
	u, err := parseHTTPURL(*rawURL)
	if err != nil {
		return usageError(e, fs, "--url %q: %v", *rawURL, err)
	}
	if *expect < 0 {
		return usageError(e, fs, "--expect-backends %d: must not be negative", *expect)
	}
	if *count < 1 {
		return usageError(e, fs, "--count %d: must be at least 1", *count)
	}
	if *parallel < 1 {
		return usageError(e, fs, "--parallel %d: must be at least 1", *parallel)
	}
	if *timeout <= 0 {
		return usageError(e, fs, "--timeout %v: must be positive", *timeout)
	}

	results := make([]getResult, *count)
	next := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range min(*parallel, *count) {
		wg.Go(func() {
			for i := range next {
				results[i] = getOnce(e.ctx, e, u, *timeout)
			}
		})
	}
	for i := range results {
		next <- i
	}
	close(next)
	wg.Wait()
	s := summarize(u.String(), results, time.Since(start))

	if *asJSON {
		out, _ := json.Marshal(s)
		fmt.Fprintf(e.stdout, "%s\n", out)
	} else {
		fmt.Fprint(e.stdout, s.text())
	}
	if s.OK != s.Count {
		return exitFail
	}
	if len(s.Backends) < *expect {
		fmt.Fprintf(e.stderr, "l4echo get: %d backends answered, want at least %d\n", len(s.Backends), *expect)
		return exitFail
	}
	return exitOK
}
