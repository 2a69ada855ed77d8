package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Error kinds of a short connection, the keys of ConnStats.Errors. The
// connect phase is told apart: a refused or timed-out connect means the
// balancer (or the NAT) lost the SYN, a reset after it means a broken flow.
const (
	errConnectRefused = "connect_refused"
	errConnectTimeout = "connect_timeout"
	errNoPort         = "connect_no_port" // EADDRNOTAVAIL: the client's source ports ran out
	errConnectOther   = "connect_other"
	errReset          = "reset"
	errTimeout        = "timeout"
	errShortReply     = "short_reply"
	errOther          = "other"
)

// slowThreshold is what counts as a stalled connection: one second is the
// initial SYN retransmission timeout (RFC 6298, Linux TCP_TIMEOUT_INIT), so
// a connection slower than that almost always lost its SYN or SYN-ACK.
const slowThreshold = time.Second

// classifyConn names a failed short connection.
func classifyConn(err error, connected bool) string {
	var ne net.Error
	timeout := errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, syscall.ETIMEDOUT) || (errors.As(err, &ne) && ne.Timeout())
	if !connected {
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			return errConnectRefused
		case timeout:
			return errConnectTimeout
		case errors.Is(err, syscall.EADDRNOTAVAIL):
			return errNoPort
		default:
			return errConnectOther
		}
	}
	switch {
	case errors.Is(err, errShort):
		return errShortReply
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return errReset
	case timeout:
		return errTimeout
	default:
		return errOther
	}
}

var errShort = errors.New("short reply")

// LatencyMS are percentiles of successful connections in milliseconds, from
// the start of connect(2) to the server's EOF.
type LatencyMS struct {
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// ConnStats is what "l4bench load --json" prints.
type ConnStats struct {
	Target      string  `json:"target"`
	Workers     int     `json:"workers"`
	DurationS   float64 `json:"duration_s"` // the window in which connections were started
	ElapsedS    float64 `json:"elapsed_s"`  // until the last connection ended
	SourceAddrs int     `json:"source_addrs"`
	Started     uint64  `json:"started"`      // connections started in the window
	OK          uint64  `json:"ok"`           // of those, the successful ones
	OKInWindow  uint64  `json:"ok_in_window"` // successful and finished within the window
	// ConnPerSec is OKInWindow / DurationS: connections that straddle the
	// end of the window count for latency but not for the rate, so that a
	// stall at the end neither inflates nor deflates it.
	ConnPerSec float64           `json:"conn_per_s"`
	Slow       uint64            `json:"slow"` // successful ones slower than SlowMS
	SlowMS     float64           `json:"slow_threshold_ms"`
	Failed     uint64            `json:"failed"`
	Errors     map[string]uint64 `json:"errors"`
	Latency    LatencyMS         `json:"latency_ms"`
}

// loadConfig is one load run.
type loadConfig struct {
	target   string
	workers  int
	duration time.Duration
	timeout  time.Duration // bounds one connection from connect to EOF
	sources  []netip.Addr  // bound round robin; none: the kernel's choice
	request  []byte
	reply    int // expected answer size; 0: anything non-empty
	cc       string
	// dial opens a connection from source (invalid: any); tests replace it.
	dial func(ctx context.Context, source netip.Addr, target string) (net.Conn, error)
}

// netDialer dials TCP from a source address with IP_BIND_ADDRESS_NO_PORT,
// so that each client address offers a full ephemeral range per target.
func netDialer(cc string) func(ctx context.Context, source netip.Addr, target string) (net.Conn, error) {
	plain := &net.Dialer{Control: sockOpts(cc, false)}
	return func(ctx context.Context, source netip.Addr, target string) (net.Conn, error) {
		if !source.IsValid() {
			return plain.DialContext(ctx, "tcp", target)
		}
		d := net.Dialer{
			LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(source, 0)),
			Control:   sockOpts(cc, true),
		}
		return d.DialContext(ctx, "tcp", target)
	}
}

// workerStats is what one worker gathers; merged at the end.
type workerStats struct {
	hist       histogram
	started    uint64
	ok         uint64
	okInWindow uint64
	slow       uint64
	errors     map[string]uint64
}

// oneConn runs one short connection and returns whether connect succeeded,
// when the server's EOF came (the end of the latency) and the error, if any.
func oneConn(ctx context.Context, cfg *loadConfig, source netip.Addr, buf []byte) (connected bool, eof time.Time, err error) {
	deadline := time.Now().Add(cfg.timeout)
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	c, err := cfg.dial(dctx, source, cfg.target)
	if err != nil {
		return false, time.Time{}, err
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return true, time.Time{}, err
	}
	if _, err := c.Write(cfg.request); err != nil {
		return true, time.Time{}, err
	}
	got := 0
	for {
		n, err := c.Read(buf)
		got += n
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return true, time.Time{}, err
		}
	}
	eof = time.Now()
	if got == 0 || (cfg.reply > 0 && got != cfg.reply) {
		return true, eof, fmt.Errorf("%w: %d bytes, want %d", errShort, got, cfg.reply)
	}
	return true, eof, nil
}

// runLoadTest runs cfg.workers workers for cfg.duration; each loops over
// short connections. The context ends the run early (SIGINT).
func runLoadTest(ctx context.Context, cfg loadConfig) ConnStats {
	start := time.Now()
	end := start.Add(cfg.duration)
	var next atomic.Uint64
	stats := make([]*workerStats, cfg.workers)
	var wg sync.WaitGroup
	for w := range stats {
		ws := &workerStats{errors: map[string]uint64{}}
		stats[w] = ws
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				var src netip.Addr
				if len(cfg.sources) > 0 {
					src = cfg.sources[(next.Add(1)-1)%uint64(len(cfg.sources))]
				}
				connected, t1, err := oneConn(ctx, &cfg, src, buf)
				ws.started++
				if err != nil {
					ws.errors[classifyConn(err, connected)]++
					continue
				}
				lat := t1.Sub(t0)
				ws.hist.record(lat)
				ws.ok++
				if !t1.After(end) {
					ws.okInWindow++
				}
				if lat > slowThreshold {
					ws.slow++
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	out := ConnStats{
		Target: cfg.target, Workers: cfg.workers, DurationS: cfg.duration.Seconds(), ElapsedS: elapsed.Seconds(),
		SourceAddrs: len(cfg.sources), SlowMS: ms(slowThreshold), Errors: map[string]uint64{},
	}
	var h histogram
	for _, ws := range stats {
		h.merge(&ws.hist)
		out.Started += ws.started
		out.OK += ws.ok
		out.OKInWindow += ws.okInWindow
		out.Slow += ws.slow
		for k, v := range ws.errors {
			out.Errors[k] += v
			out.Failed += v
		}
	}
	if cfg.duration > 0 {
		out.ConnPerSec = float64(out.OKInWindow) / cfg.duration.Seconds()
	}
	out.Latency = LatencyMS{P50: ms(h.quantile(0.50)), P99: ms(h.quantile(0.99)), P999: ms(h.quantile(0.999)),
		Max: ms(time.Duration(h.max)), Mean: ms(h.mean())}
	return out
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// maxWorkers bounds --workers: each holds one connection at a time.
const maxWorkers = 10000

func runLoad(e env, args []string) int {
	fs := newFlagSet("load", "--target IP:PORT [--workers N] [--duration D] [--source-addrs A,B] [--json]")
	target := fs.String("target", "", "`IP:PORT` to connect to")
	workers := fs.Int("workers", 32, "concurrent `N` workers, each one connection at a time")
	duration := fs.Duration("duration", 10*time.Second, "time `D` during which connections are started")
	sources := fs.String("source-addrs", "", "comma-separated client `ADDRS` to bind, round robin (default: the kernel's choice)")
	reqBytes := fs.Int("request-bytes", defaultRequestBytes, "request size in `bytes`")
	replyBytes := fs.Int("reply-bytes", defaultReplyBytes, "expected answer size in `bytes` (0: any non-empty)")
	timeout := fs.Duration("timeout", 10*time.Second, "limit `D` of one connection, connect to EOF")
	cc := fs.String("cc", "", "TCP congestion control `ALG` of the sockets (default: the system's)")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	if code, done := parseFlags(e, fs, args, false); done {
		return code
	}
	if _, err := parseAddrPorts(*target); err != nil {
		return usageError(e, fs, "--target %v", err)
	}
	if *workers < 1 || *workers > maxWorkers {
		return usageError(e, fs, "--workers %d: want 1 to %d", *workers, maxWorkers)
	}
	if *duration <= 0 {
		return usageError(e, fs, "--duration %v: must be positive", *duration)
	}
	if *timeout <= 0 {
		return usageError(e, fs, "--timeout %v: must be positive", *timeout)
	}
	if *reqBytes < 1 || *reqBytes > maxMessageBytes {
		return usageError(e, fs, "--request-bytes %d: want 1 to %d", *reqBytes, maxMessageBytes)
	}
	if *replyBytes < 0 || *replyBytes > maxMessageBytes {
		return usageError(e, fs, "--reply-bytes %d: want 0 to %d", *replyBytes, maxMessageBytes)
	}
	src, err := parseAddrs(*sources)
	if err != nil {
		return usageError(e, fs, "--source-addrs %v", err)
	}
	cfg := loadConfig{
		target: *target, workers: *workers, duration: *duration, timeout: *timeout, sources: src,
		request: message(*reqBytes, 'q'), reply: *replyBytes, cc: *cc, dial: netDialer(*cc),
	}
	st := runLoadTest(e.ctx, cfg)
	if *asJSON {
		b, _ := json.MarshalIndent(st, "", "  ")
		fmt.Fprintf(e.stdout, "%s\n", b)
	} else {
		printConnStats(e.stdout, st)
	}
	if st.OK == 0 {
		fmt.Fprintf(e.stderr, "l4bench load: no successful connection to %s (errors %v)\n", *target, st.Errors)
		return exitFail
	}
	return exitOK
}

func printConnStats(w io.Writer, st ConnStats) {
	fmt.Fprintf(w, "%s: %d workers, %.1f s: %.0f conn/s, %d ok, %d failed, %d slower than %.0f ms\n",
		st.Target, st.Workers, st.DurationS, st.ConnPerSec, st.OK, st.Failed, st.Slow, st.SlowMS)
	fmt.Fprintf(w, "latency ms: p50 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f\n",
		st.Latency.P50, st.Latency.P99, st.Latency.P999, st.Latency.Max, st.Latency.Mean)
	keys := make([]string, 0, len(st.Errors))
	for k := range st.Errors {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "errors %s: %d\n", k, st.Errors[k])
	}
}
