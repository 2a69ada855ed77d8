package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pipeListener is an in-memory listener: every dial is a net.Pipe, so the
// client and server code run end to end without a socket.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	c, s := net.Pipe()
	select {
	case l.conns <- s:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// startPipeServer serves h in memory and returns a dial function reaching it.
func startPipeServer(t *testing.T, h http.Handler) dialFunc {
	t.Helper()
	l := newPipeListener()
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.dial
}

func runCmd(t *testing.T, dial dialFunc, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(env{ctx: t.Context(), stdout: &stdout, stderr: &stderr, dial: dial}, args)
	return code, stdout.String(), stderr.String()
}

func TestHandler(t *testing.T) {
	h := newHandler("be7")
	tests := []struct {
		name, method, target string
		body                 string
		status               int
		wantBody             string
	}{
		{"root", "GET", "/", "", 200, "be7\n"},
		{"health", "GET", "/health", "", 200, "ok\n"},
		{"whoami", "GET", "/whoami", "", 200, `{"name":"be7","remote":"198.18.0.10:40000"}` + "\n"},
		{"bytes zero", "GET", "/bytes?n=0", "", 200, ""},
		{"bytes bad n", "GET", "/bytes?n=x", "", 400, ""},
		{"bytes no n", "GET", "/bytes", "", 400, ""},
		{"bytes bad seed", "GET", "/bytes?n=1&seed=-1", "", 400, ""},
		{"bytes too many", "GET", "/bytes?n=1099511627777", "", 400, ""},
		{"sink", "POST", "/sink", "hello", 200, `{"bytes":5,"sha256":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"}` + "\n"},
		{"unknown path", "GET", "/nope", "", 404, ""},
		{"wrong method", "POST", "/", "", 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))
			r.RemoteAddr = "198.18.0.10:40000"
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d (%q)", w.Code, tt.status, w.Body.String())
			}
			if tt.status != 200 {
				return
			}
			if got := w.Body.String(); got != tt.wantBody {
				t.Fatalf("body %q, want %q", got, tt.wantBody)
			}
			if got := w.Header().Get("X-Backend"); got != "be7" {
				t.Fatalf("X-Backend %q", got)
			}
			if got := w.Header().Get("X-Remote-Addr"); got != "198.18.0.10:40000" {
				t.Fatalf("X-Remote-Addr %q", got)
			}
		})
	}
}

func TestHandlerBytes(t *testing.T) {
	for _, n := range []uint64{1, 7, chunkSize, chunkSize + 3, 3*chunkSize - 1} {
		r := httptest.NewRequest("GET", "/bytes?n="+itoa(n)+"&seed=9", nil)
		w := httptest.NewRecorder()
		newHandler("be1").ServeHTTP(w, r)
		if uint64(w.Body.Len()) != n {
			t.Fatalf("n=%d: got %d bytes", n, w.Body.Len())
		}
		if i := (stream{seed: 9}).verify(w.Body.Bytes(), 0); i != -1 {
			t.Fatalf("n=%d: mismatch at %d", n, i)
		}
		if w.Header().Get("Content-Length") != itoa(n) {
			t.Fatalf("n=%d: Content-Length %q", n, w.Header().Get("Content-Length"))
		}
	}
}

func itoa(n uint64) string { return (*sizeFlag)(&n).String() }

func TestGetEndToEnd(t *testing.T) {
	dial := startPipeServer(t, newHandler("be1"))
	code, out, errOut := runCmd(t, dial, "get", "--url", "http://198.18.0.21:8080/", "--count", "25", "--parallel", "4", "--json")
	if code != exitOK {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	var s summary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("not one JSON object: %v: %q", err, out)
	}
	if s.Count != 25 || s.OK != 25 || s.Backends["be1"] != 25 || s.RemoteIPs["pipe"] != 25 {
		t.Fatalf("summary %+v", s)
	}
	if s.Latency.Max <= 0 || s.Latency.P50 > s.Latency.P99 || s.Latency.P99 > s.Latency.Max {
		t.Fatalf("latency %+v", s.Latency)
	}
}

func TestGetCountsFailures(t *testing.T) {
	refused := func(context.Context, string, string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	code, out, _ := runCmd(t, refused, "get", "--url", "http://198.18.0.100/", "--count", "3")
	if code != exitFail {
		t.Fatalf("exit %d, want %d", code, exitFail)
	}
	if !strings.Contains(out, "0 ok, 3 failed (refused 3") {
		t.Fatalf("text summary: %s", out)
	}
}

func TestGetTimeout(t *testing.T) {
	// A server that accepts and never answers: a blackhole after the handshake.
	l := newPipeListener()
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c) }()
		}
	}()
	start := time.Now()
	code, out, _ := runCmd(t, l.dial, "get", "--url", "http://198.18.0.100/", "--count", "2", "--parallel", "2", "--timeout", "100ms", "--json")
	if code != exitFail {
		t.Fatalf("exit %d", code)
	}
	var s summary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatal(err)
	}
	if s.Errors.Timeout != 2 {
		t.Fatalf("summary %+v", s)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v with a 100ms timeout", d)
	}
}

func TestDownloadUploadEndToEnd(t *testing.T) {
	dial := startPipeServer(t, newHandler("be1"))
	for _, cmd := range []string{"download", "upload"} {
		code, out, errOut := runCmd(t, dial, cmd, "--url", "http://198.18.0.21:8080", "--bytes", "3MiB", "--seed", "5", "--json")
		if code != exitOK {
			t.Fatalf("%s: exit %d: %s %s", cmd, code, out, errOut)
		}
		var r transferResult
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		if !r.OK || r.Bytes != 3<<20 || r.Gbps <= 0 || r.Kind != kindOK || r.MismatchOffset != -1 {
			t.Fatalf("%s: %+v", cmd, r)
		}
	}
}

func TestDownloadDetectsCorruption(t *testing.T) {
	const n, bad = 100000, 77777
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{"flipped byte", func(w http.ResponseWriter, r *http.Request) {
			p := make([]byte, n)
			stream{seed: 1}.fill(p, 0)
			p[bad] ^= 0xff
			w.Write(p)
		}, "data mismatch at offset 77777"},
		{"short body", func(w http.ResponseWriter, r *http.Request) {
			p := make([]byte, n-1)
			stream{seed: 1}.fill(p, 0)
			w.Write(p)
		}, "short read"},
		{"wrong length", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "5")
			w.Write([]byte("12345"))
		}, "content-length 5"},
		{"server error", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no", http.StatusServiceUnavailable)
		}, "503"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dial := startPipeServer(t, tt.handler)
			code, out, _ := runCmd(t, dial, "download", "--url", "http://198.18.0.21:8080", "--bytes", itoa(n), "--json")
			if code != exitFail {
				t.Fatalf("exit %d: %s", code, out)
			}
			var r transferResult
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatal(err)
			}
			if r.OK || !strings.Contains(r.Error, tt.want) {
				t.Fatalf("result %+v, want error with %q", r, tt.want)
			}
		})
	}
}

func TestUploadDetectsWrongHash(t *testing.T) {
	dial := startPipeServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		sum := sha256.Sum256([]byte("something else"))
		json.NewEncoder(w).Encode(sinkAnswer{Bytes: uint64(n), SHA256: hex.EncodeToString(sum[:])})
	}))
	code, out, _ := runCmd(t, dial, "upload", "--url", "http://198.18.0.21:8080", "--bytes", "1000")
	if code != exitFail || !strings.Contains(out, "data mismatch") {
		t.Fatalf("exit %d: %s", code, out)
	}
}

func TestConnect(t *testing.T) {
	ok := func(context.Context, string, string) (net.Conn, error) { c, _ := net.Pipe(); return c, nil }
	refused := func(context.Context, string, string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	tests := []struct {
		name string
		dial dialFunc
		code int
		want string
	}{
		{"ok", ok, exitOK, kindOK},
		{"refused", refused, exitFail, kindRefused},
	}
	for _, tt := range tests {
		code, out, _ := runCmd(t, tt.dial, "connect", "--addr", "198.18.0.100:80", "--json")
		var r connectResult
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%s: %v: %q", tt.name, err, out)
		}
		if code != tt.code || r.Result != tt.want || r.Addr != "198.18.0.100:80" {
			t.Fatalf("%s: exit %d, %+v", tt.name, code, r)
		}
	}
}

func TestServeGracefulStop(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	l := newPipeListener()
	var logs bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- serve(ctx, l, "be1", slog.New(slog.NewTextHandler(&logs, nil))) }()
	code, out, _ := runCmd(t, l.dial, "get", "--url", "http://198.18.0.21:8080/")
	if code != exitOK {
		t.Fatalf("get before stop: %s", out)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(shutdownGrace + time.Second):
		t.Fatal("serve did not return after its context ended")
	}
	if !strings.Contains(logs.String(), "stopped") {
		t.Fatalf("no stop line: %q", logs.String())
	}
}

func TestDownloadStopsOnCancel(t *testing.T) {
	dial := startPipeServer(t, newHandler("be1"))
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := run(env{ctx: ctx, stdout: &stdout, stderr: &stderr, dial: dial},
		[]string{"download", "--url", "http://198.18.0.21:8080", "--bytes", "1TiB", "--json"})
	if code != exitFail {
		t.Fatalf("exit %d: %s", code, stdout.String())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a cancelled download ran %v", d)
	}
}
