package health

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rawServer accepts connections and hands each to handle; it reports on
// results how the connection's end looked from the server: nil when the
// client's FIN arrived (after handle returns, the server reads until EOF,
// then closes).
func rawServer(t *testing.T, handle func(c *net.TCPConn, r *bufio.Reader)) (netip.AddrPort, <-chan error) {
	t.Helper()
	ln, addr := listen(t)
	results := make(chan error, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				r := bufio.NewReader(c)
				handle(c.(*net.TCPConn), r)
				_, err := io.Copy(io.Discard, r)
				results <- err
			}()
		}
	}()
	return addr, results
}

// readRequest reads one request head and returns its request line and
// Host header.
func readRequest(r *bufio.Reader) (line, host string) {
	req, err := http.ReadRequest(r)
	if err != nil {
		return "error: " + err.Error(), ""
	}
	return req.Method + " " + req.RequestURI + " " + req.Proto + " close=" + fmt.Sprint(req.Close) +
		" ua=" + req.UserAgent(), req.Host
}

// respond writes resp after reading the request, then half-closes as a
// server does after a "Connection: close" request.
func respond(resp string) func(*net.TCPConn, *bufio.Reader) {
	return func(c *net.TCPConn, r *bufio.Reader) {
		readRequest(r)
		io.WriteString(c, resp)
		c.CloseWrite()
	}
}

func probeWith(p Prober, addr netip.AddrPort, timeout time.Duration) (error, time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	err := p.Probe(ctx, addr)
	return err, time.Since(start)
}

// cleanEnd waits for the server's view of the connection's end.
func cleanEnd(t *testing.T, results <-chan error) {
	t.Helper()
	select {
	case err := <-results:
		if err != nil {
			t.Errorf("server saw %v, want a clean FIN", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("server saw no end of connection")
	}
}

func TestHTTPProber(t *testing.T) {
	big := strings.Repeat("x", 300<<10)
	tests := []struct {
		name    string
		p       HTTPProber
		handle  func(*net.TCPConn, *bufio.Reader)
		want    string // "" = healthy; "timeout" = an error that is a timeout
		timeout time.Duration
	}{
		{"200", HTTPProber{}, respond("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), "", time.Second},
		{"200 until close", HTTPProber{}, respond("HTTP/1.0 200 OK\r\n\r\nhealthy"), "", time.Second},
		{"204 expected", HTTPProber{Path: "/healthz", Status: 204}, respond("HTTP/1.1 204 No Content\r\n\r\n"), "", time.Second},
		{"chunked", HTTPProber{}, respond("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"), "", time.Second},
		{"body beyond 64 KiB", HTTPProber{}, respond(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(big), big)), "", 2 * time.Second},
		{"no reason phrase", HTTPProber{}, respond("HTTP/1.1 200\r\n\r\n"), "", time.Second},
		{"bare LF", HTTPProber{}, respond("HTTP/1.1 200 OK\nContent-Length: 0\n\n"), "", time.Second},
		{"wrong status", HTTPProber{}, respond("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"), "http: status 503, want 200", time.Second},
		{"200 but want 204", HTTPProber{Status: 204}, respond("HTTP/1.1 200 OK\r\n\r\n"), "http: status 200, want 204", time.Second},
		// A server that speaks first, and reads nothing: the probe must not
		// leave its own receive queue unread.
		{"garbage", HTTPProber{}, func(c *net.TCPConn, r *bufio.Reader) { io.WriteString(c, "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n") },
			`http: malformed status line "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"`, time.Second},
		{"long garbage", HTTPProber{}, respond(strings.Repeat("<html>", 2000)),
			`http: malformed status line "` + strings.Repeat("<html>", 10) + `<htm"...`, time.Second},
		{"bad code", HTTPProber{}, respond("HTTP/1.1 2xx OK\r\n\r\n"), `http: malformed status line "HTTP/1.1 2xx OK\r\n"`, time.Second},
		{"bad header", HTTPProber{}, respond("HTTP/1.1 200 OK\r\nno colon here\r\n\r\n"), "http: malformed response headers", time.Second},
		{"headers too long", HTTPProber{}, respond("HTTP/1.1 200 OK\r\nX: " + strings.Repeat("y", 70<<10) + "\r\n\r\n"),
			"http: response headers longer than 65536 bytes", time.Second},
		{"closed before response", HTTPProber{}, func(c *net.TCPConn, r *bufio.Reader) { readRequest(r); c.CloseWrite() },
			"http: connection closed before a response", time.Second},
		{"closed in headers", HTTPProber{}, respond("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"), "http: connection closed in the response headers", time.Second},
		{"closed in a header line", HTTPProber{}, respond("HTTP/1.1 200 OK\r\nContent-"), "http: malformed response headers", time.Second},
		{"no response", HTTPProber{}, func(c *net.TCPConn, r *bufio.Reader) { readRequest(r); time.Sleep(300 * time.Millisecond) },
			"timeout", 100 * time.Millisecond},
		{"status then stall", HTTPProber{}, func(c *net.TCPConn, r *bufio.Reader) {
			readRequest(r)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok")
			time.Sleep(300 * time.Millisecond)
		}, "", 100 * time.Millisecond},
		// A server that ignores Connection: close closes once it sees our
		// FIN, sent as soon as the framed body is in.
		{"keep-alive server", HTTPProber{}, func(c *net.TCPConn, r *bufio.Reader) {
			readRequest(r)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok")
		}, "", 2 * time.Second},
		{"invalid path", HTTPProber{Path: "/a b"}, nil, `http: invalid path "/a b"`, time.Second},
		{"relative path", HTTPProber{Path: "healthz"}, nil, `http: invalid path "healthz"`, time.Second},
		{"invalid host", HTTPProber{Host: "a\r\nX-Injected: 1"}, nil, `http: invalid host "a\r\nX-Injected: 1"`, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.handle
			if h == nil {
				h = func(*net.TCPConn, *bufio.Reader) { t.Error("an invalid request was sent") }
			}
			addr, results := rawServer(t, h)
			err, d := probeWith(tt.p, addr, tt.timeout)
			switch {
			case tt.want == "timeout":
				if err == nil || !isTimeout(err) {
					t.Fatalf("probe: %v, want a timeout", err)
				}
			case tt.want == "" && err != nil:
				t.Fatalf("probe: %v after %v", err, d)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Fatalf("probe: %v\nwant   %s", err, tt.want)
			}
			if d > tt.timeout+time.Second {
				t.Errorf("probe took %v, limit %v", d, tt.timeout)
			}
			if tt.handle != nil && tt.want != "timeout" && tt.name != "status then stall" {
				cleanEnd(t, results)
			}
		})
	}
}

// TestHTTPProberRequest checks what the probe sends.
func TestHTTPProberRequest(t *testing.T) {
	got := make(chan [2]string, 1)
	addr, results := rawServer(t, func(c *net.TCPConn, r *bufio.Reader) {
		line, host := readRequest(r)
		got <- [2]string{line, host}
		io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n")
		c.CloseWrite()
	})
	for _, tt := range []struct {
		p          HTTPProber
		line, host string
	}{
		{HTTPProber{}, "GET / HTTP/1.1 close=true ua=l4raw-health", addr.String()},
		{HTTPProber{Path: "/healthz?full=1", Host: "example.org"}, "GET /healthz?full=1 HTTP/1.1 close=true ua=l4raw-health", "example.org"},
	} {
		if err, _ := probeWith(tt.p, addr, time.Second); err != nil {
			t.Fatalf("%+v: %v", tt.p, err)
		}
		if g := <-got; g[0] != tt.line || g[1] != tt.host {
			t.Errorf("%+v sent %q with Host %q, want %q, %q", tt.p, g[0], g[1], tt.line, tt.host)
		}
		cleanEnd(t, results)
	}
}

// TestHTTPProberNetHTTP probes Go's own server, which closes after a
// "Connection: close" request as servers do.
func TestHTTPProberNetHTTP(t *testing.T) {
	ln, addr := listen(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, strings.Repeat("z", 1<<20)) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	for _, tt := range []struct {
		p    HTTPProber
		want string
	}{
		{HTTPProber{Path: "/healthz"}, ""},
		{HTTPProber{Path: "/big"}, ""},
		{HTTPProber{Path: "/missing"}, "http: status 404, want 200"},
	} {
		for i := 0; i < 3; i++ {
			err, d := probeWith(tt.p, addr, 2*time.Second)
			if got := fmt.Sprint(err); (tt.want == "" && err != nil) || (tt.want != "" && got != tt.want) {
				t.Fatalf("%+v: %v after %v, want %q", tt.p, err, d, tt.want)
			}
			if d > time.Second {
				t.Errorf("%+v took %v: the server's close did not end it", tt.p, d)
			}
		}
	}
}

func TestHTTPProberRefused(t *testing.T) {
	ln, addr := listen(t)
	ln.Close()
	err, d := probeWith(HTTPProber{}, addr, 2*time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) || err.Error() != "connect: connection refused" {
		t.Fatalf("probe of a closed port: %v", err)
	}
	if d > time.Second {
		t.Errorf("refusal took %v", d)
	}
}

// TestCheckerHTTPTimeout checks the reason a silent HTTP backend gets.
func TestCheckerHTTPTimeout(t *testing.T) {
	addr, _ := rawServer(t, func(c *net.TCPConn, r *bufio.Reader) { time.Sleep(time.Second) })
	rec := newRecorder()
	c := New(nil, nil, rec.onChange)
	c.SetTargets([]Target{{ID: 1, Addr: addr, Config: Config{Interval: time.Second, Timeout: 50 * time.Millisecond}, Prober: HTTPProber{}}})
	c.Initial(context.Background())
	if evs := rec.all(); len(evs) != 1 || evs[0].Up || evs[0].Reason != "timeout after 50ms" {
		t.Fatalf("events %+v", evs)
	}
}

func TestParseStatusLine(t *testing.T) {
	for _, tt := range []struct {
		line string
		code int
		ok   bool
	}{
		{"HTTP/1.1 200 OK\r\n", 200, true},
		{"HTTP/1.0 503 Service Unavailable\r\n", 503, true},
		{"HTTP/1.1 204\r\n", 204, true},
		{"HTTP/1.1 301 \n", 301, true},
		{"HTTP/1.1 099 Low\r\n", 0, false},
		{"HTTP/1.1 2000 OK\r\n", 0, false},
		{"HTTP/1.1 20 OK\r\n", 0, false},
		{"HTTP/2 200\r\n", 0, false},
		{"HTTP/1.x 200 OK\r\n", 0, false},
		{"http/1.1 200 OK\r\n", 0, false},
		{"HTTP/1.1  200 OK\r\n", 0, false},
		{"", 0, false},
	} {
		code, ok := parseStatusLine([]byte(tt.line))
		if code != tt.code && tt.ok || ok != tt.ok {
			t.Errorf("parseStatusLine(%q) = %d, %v; want %d, %v", tt.line, code, ok, tt.code, tt.ok)
		}
	}
}

// FuzzExchangeHTTP feeds arbitrary responses to the HTTP reader: no panic,
// one-line errors, and a code only from a well-formed status line.
func FuzzExchangeHTTP(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.0 503\n\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
		"SSH-2.0-x\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\n\x00: y\r\n\r\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rw := struct {
			io.Reader
			io.Writer
		}{strings.NewReader(string(data)), io.Discard}
		code, err := exchangeHTTP(rw, request("/", "h"))
		if err != nil {
			if strings.ContainsAny(err.Error(), "\r\n") || !strings.HasPrefix(err.Error(), "http: ") {
				t.Fatalf("error %q", err)
			}
			return
		}
		if code < 100 || code > 999 || !strings.HasPrefix(string(data), "HTTP/1.") {
			t.Fatalf("code %d from %q", code, data)
		}
	})
}
