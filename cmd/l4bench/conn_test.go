package main

// Tests of serve, load, proxy and wait over Unix stream sockets in a
// temporary directory: the same net.Conn code paths as TCP (CloseWrite
// included), and no network at all.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// unixListener listens on a fresh socket path; closed at the end of the test.
func unixListener(t *testing.T, name string) (net.Listener, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, path
}

func unixDial(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", path)
}

// eventually polls cond for up to a second: the server counts a
// connection after its close, which may come after the client saw the EOF.
func eventually(cond func() bool) {
	for i := 0; i < 100 && !cond(); i++ {
		time.Sleep(10 * time.Millisecond)
	}
}

// startServer runs an l4bench server until the end of the test.
func startServer(t *testing.T, replyBytes int) (*server, string) {
	t.Helper()
	ln, path := unixListener(t, "serve.sock")
	s := newServer(replyBytes, discardLog())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return s, path
}

func TestServerAnswersAndClosesFirst(t *testing.T) {
	s, path := startServer(t, 100)
	for _, tc := range []struct {
		name    string
		request []byte
		want    int // bytes of the answer; -1: none, the server just closes
	}{
		{"one line", message(64, 'q'), 100},
		{"newline only", []byte("\n"), 100},
		{"line in pieces", message(3000, 'q'), 100},
		{"probe: close without a line", nil, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if tc.request == nil {
				c.(*net.UnixConn).CloseWrite()
			}
			for off := 0; off < len(tc.request); off += 1000 {
				if _, err := c.Write(tc.request[off:min(off+1000, len(tc.request))]); err != nil {
					t.Fatal(err)
				}
			}
			// The server closes first: reading to EOF needs no close of ours.
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read until the server's EOF: %v", err)
			}
			if tc.want < 0 {
				if len(got) != 0 {
					t.Fatalf("probe got %d bytes", len(got))
				}
				return
			}
			if !bytes.Equal(got, message(tc.want, 'r')) {
				t.Fatalf("answer %q, want %d bytes ending in a newline", got, tc.want)
			}
		})
	}
	eventually(func() bool { return s.answered.Load() == 3 && s.failed.Load() == 1 })
	if s.answered.Load() != 3 || s.failed.Load() != 1 {
		t.Errorf("answered %d failed %d, want 3 and 1", s.answered.Load(), s.failed.Load())
	}
}

func TestServerRefusesEndlessLine(t *testing.T) {
	_, path := startServer(t, 10)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	go c.Write(bytes.Repeat([]byte("x"), 3*maxRequestLine)) // no newline: refused after maxRequestLine
	if got, _ := io.ReadAll(c); len(got) != 0 {
		t.Fatalf("got an answer of %d bytes to a request without a newline", len(got))
	}
}

func TestClassifyConn(t *testing.T) {
	for _, tc := range []struct {
		err       error
		connected bool
		want      string
	}{
		{syscall.ECONNREFUSED, false, errConnectRefused},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, false, errConnectRefused},
		{context.DeadlineExceeded, false, errConnectTimeout},
		{syscall.ETIMEDOUT, false, errConnectTimeout},
		{syscall.EADDRNOTAVAIL, false, errNoPort},
		{errors.New("weird"), false, errConnectOther},
		{syscall.ECONNRESET, true, errReset},
		{syscall.EPIPE, true, errReset},
		{os.ErrDeadlineExceeded, true, errTimeout},
		{fmt.Errorf("%w: 3 bytes", errShort), true, errShortReply},
		{io.ErrUnexpectedEOF, true, errOther},
	} {
		if got := classifyConn(tc.err, tc.connected); got != tc.want {
			t.Errorf("classifyConn(%v, %v) = %s, want %s", tc.err, tc.connected, got, tc.want)
		}
	}
}

func TestLoadAgainstServer(t *testing.T) {
	s, path := startServer(t, defaultReplyBytes)
	srcs := []netip.Addr{netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("198.18.0.11")}
	var mu sync.Mutex
	perSource := map[netip.Addr]int{}
	cfg := loadConfig{
		target: "unused", workers: 4, duration: 300 * time.Millisecond, timeout: 2 * time.Second, sources: srcs,
		request: message(defaultRequestBytes, 'q'), reply: defaultReplyBytes,
		dial: func(ctx context.Context, src netip.Addr, target string) (net.Conn, error) {
			mu.Lock()
			perSource[src]++
			mu.Unlock()
			return unixDial(ctx, path)
		},
	}
	st := runLoadTest(context.Background(), cfg)
	if st.OK == 0 || st.Failed != 0 || st.Started != st.OK {
		t.Fatalf("started %d ok %d failed %d (%v)", st.Started, st.OK, st.Failed, st.Errors)
	}
	if st.OKInWindow > st.OK || st.ConnPerSec != float64(st.OKInWindow)/0.3 {
		t.Errorf("ok_in_window %d of %d, conn/s %v", st.OKInWindow, st.OK, st.ConnPerSec)
	}
	eventually(func() bool { return s.answered.Load() == st.OK })
	if got := s.answered.Load(); got != st.OK {
		t.Errorf("server answered %d, client counted %d", got, st.OK)
	}
	l := st.Latency
	if !(l.P50 > 0 && l.P50 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max && l.Mean > 0) {
		t.Errorf("latency percentiles out of order: %+v", l)
	}
	if d := perSource[srcs[0]] - perSource[srcs[1]]; d < -4 || d > 4 {
		t.Errorf("source addresses not used round robin: %v", perSource)
	}
	if st.Slow != 0 || st.SlowMS != 1000 {
		t.Errorf("slow %d (threshold %v ms)", st.Slow, st.SlowMS)
	}
}

func TestLoadCountsErrors(t *testing.T) {
	_, path := startServer(t, 10)
	n := 0
	var mu sync.Mutex
	cfg := loadConfig{
		workers: 1, duration: 200 * time.Millisecond, timeout: time.Second,
		request: message(10, 'q'), reply: 20, // the server answers 10: every answer is short
		dial: func(ctx context.Context, _ netip.Addr, _ string) (net.Conn, error) {
			mu.Lock()
			n++
			odd := n%2 == 1
			mu.Unlock()
			if odd {
				return nil, &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
			}
			return unixDial(ctx, path)
		},
	}
	st := runLoadTest(context.Background(), cfg)
	if st.OK != 0 || st.Failed == 0 || st.Failed != st.Started {
		t.Fatalf("ok %d failed %d started %d", st.OK, st.Failed, st.Started)
	}
	if st.Errors[errConnectRefused] == 0 || st.Errors[errShortReply] == 0 ||
		st.Errors[errConnectRefused]+st.Errors[errShortReply] != st.Failed {
		t.Fatalf("errors %v", st.Errors)
	}
	if st.Latency != (LatencyMS{}) {
		t.Fatalf("latency of failed connections recorded: %+v", st.Latency)
	}
}

func TestLoadTimeoutOnSilentServer(t *testing.T) {
	ln, path := unixListener(t, "silent.sock")
	go func() { // accepts and never answers
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	cfg := loadConfig{
		workers: 2, duration: 50 * time.Millisecond, timeout: 150 * time.Millisecond, request: message(8, 'q'),
		dial: func(ctx context.Context, _ netip.Addr, _ string) (net.Conn, error) { return unixDial(ctx, path) },
	}
	start := time.Now()
	st := runLoadTest(context.Background(), cfg)
	if st.Errors[errTimeout] != st.Started || st.Started == 0 {
		t.Fatalf("errors %v of %d started", st.Errors, st.Started)
	}
	// The window is 50 ms, but started connections are waited for.
	if el := time.Since(start); el < 150*time.Millisecond || st.ElapsedS < 0.15 {
		t.Fatalf("returned after %v (elapsed_s %v): did not wait for connections in flight", el, st.ElapsedS)
	}
}

// sinkBackend reads a connection until EOF, then answers with the byte
// count and SHA-256 of what it got, followed by answerBytes of its own,
// and closes: one half-close in each direction.
func sinkBackend(t *testing.T, name string, answerBytes int, seen *sync.Map) string {
	t.Helper()
	ln, path := unixListener(t, name+".sock")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				h := sha256.New()
				n, err := io.Copy(h, c)
				if err != nil {
					return
				}
				v, _ := seen.LoadOrStore(name, new(atomic.Int64))
				v.(*atomic.Int64).Add(1)
				fmt.Fprintf(c, "%s %d %x\n", name, n, h.Sum(nil))
				c.Write(bytes.Repeat([]byte{'b'}, answerBytes))
			}()
		}
	}()
	return path
}

func TestProxyCopiesBothWays(t *testing.T) {
	var seen sync.Map
	const answer = 3 << 20
	paths := []string{sinkBackend(t, "be1", answer, &seen), sinkBackend(t, "be2", answer, &seen), sinkBackend(t, "be3", answer, &seen)}
	ln, path := unixListener(t, "proxy.sock")
	p := newProxy(paths, unixDial, discardLog())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 6; i++ {
		size := 1<<20 + r.IntN(1<<20)
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(r.Uint32())
		}
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			c.Write(data)
			c.(*net.UnixConn).CloseWrite() // the backend sees EOF only through the proxy's half-close
		}()
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Fatalf("connection %d: read: %v", i, err)
		}
		line, rest, _ := bytes.Cut(got, []byte("\n"))
		want := fmt.Sprintf("be%d %d %x", i%3+1, size, sha256.Sum256(data))
		if string(line) != want {
			t.Fatalf("connection %d: backend saw %q, want %q (round robin, every byte)", i, line, want)
		}
		if len(rest) != answer || bytes.Count(rest, []byte{'b'}) != answer {
			t.Fatalf("connection %d: got %d answer bytes, want %d", i, len(rest), answer)
		}
	}
	for _, name := range []string{"be1", "be2", "be3"} {
		if v, ok := seen.Load(name); !ok || v.(*atomic.Int64).Load() != 2 {
			t.Errorf("%s served %v connections, want 2", name, v)
		}
	}
	if p.accepted.Load() != 6 || p.dialFailed.Load() != 0 {
		t.Errorf("accepted %d dial failed %d", p.accepted.Load(), p.dialFailed.Load())
	}
}

func TestProxyDialFailureClosesClient(t *testing.T) {
	ln, path := unixListener(t, "proxy.sock")
	p := newProxy([]string{filepath.Join(t.TempDir(), "nobody.sock")}, unixDial, discardLog())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.serve(ctx, ln)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if got, err := io.ReadAll(c); err != nil || len(got) != 0 {
		t.Fatalf("read %q, %v: want EOF at once", got, err)
	}
	if p.dialFailed.Load() != 1 {
		t.Fatalf("dial failures %d, want 1", p.dialFailed.Load())
	}
}

func TestWaitConnect(t *testing.T) {
	fails := 2
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		if fails > 0 {
			fails--
			return nil, syscall.ECONNREFUSED
		}
		a, b := net.Pipe()
		b.Close()
		return a, nil
	}
	if tries, err := waitConnect(context.Background(), dial, "x", time.Second, time.Millisecond); err != nil || tries != 3 {
		t.Fatalf("tries %d, err %v; want 3, nil", tries, err)
	}
	never := func(ctx context.Context, addr string) (net.Conn, error) { return nil, syscall.ECONNREFUSED }
	start := time.Now()
	_, err := waitConnect(context.Background(), never, "198.18.0.1:80", 50*time.Millisecond, 10*time.Millisecond)
	if !errors.Is(err, syscall.ECONNREFUSED) || time.Since(start) > 2*time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
}
