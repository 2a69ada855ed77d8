package health

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"
)

// listen opens a loopback listener closed at the end of the test.
func listen(t *testing.T) (net.Listener, netip.AddrPort) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, ln.Addr().(*net.TCPAddr).AddrPort()
}

// serve accepts connections, optionally writes banner, then reads until the
// client's FIN and closes. It reports how each read ended on results.
func serve(ln net.Listener, banner []byte, results chan<- error) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			if len(banner) > 0 {
				if _, err := c.Write(banner); err != nil {
					results <- err
					return
				}
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := io.Copy(io.Discard, c)
			results <- err // nil: the client's FIN arrived
		}()
	}
}

func probe(t *testing.T, addr netip.AddrPort, timeout time.Duration) (error, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	err := (&TCPProber{}).Probe(ctx, addr)
	return err, time.Since(start)
}

func TestTCPProberOpen(t *testing.T) {
	for _, tt := range []struct {
		name   string
		banner []byte
	}{
		{"silent server", nil},
		// Unread data at close would make our kernel send a RST.
		{"server sends first", []byte(strings.Repeat("220 ready\r\n", 200))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ln, addr := listen(t)
			results := make(chan error, 10)
			go serve(ln, tt.banner, results)
			for i := 0; i < 5; i++ {
				if err, d := probe(t, addr, time.Second); err != nil {
					t.Fatalf("probe %d: %v after %v", i, err, d)
				}
				select {
				case err := <-results:
					if err != nil {
						t.Fatalf("server saw %v, want a clean FIN", err)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("server saw no end of connection")
				}
			}
		})
	}
}

func TestTCPProberRefused(t *testing.T) {
	ln, addr := listen(t)
	ln.Close()
	err, d := probe(t, addr, 2*time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) || err.Error() != "connect: connection refused" {
		t.Fatalf("probe of a closed port: %v, want connect: connection refused", err)
	}
	if d > time.Second {
		t.Errorf("refusal took %v, want it at once", d)
	}
}

// TestTCPProberNotAccepting documents that a listener whose process never
// calls accept passes a TCP check: the kernel completes the handshake from
// the listen backlog. The probe waits for a FIN that never comes and so
// takes its whole timeout.
func TestTCPProberNotAccepting(t *testing.T) {
	_, addr := listen(t)
	err, d := probe(t, addr, 200*time.Millisecond)
	if err != nil {
		t.Fatalf("probe of a listener that never accepts: %v", err)
	}
	if d > 2*time.Second {
		t.Errorf("probe took %v, want about its 200ms timeout", d)
	}
}

func TestTCPProberCancelled(t *testing.T) {
	_, addr := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	if err := (&TCPProber{}).Probe(ctx, addr); err != nil {
		t.Fatalf("connected probe: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancel did not end the wait for FIN: %v", d)
	}
	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	if err := (&TCPProber{}).Probe(done, addr); !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "connect: ") {
		t.Errorf("probe with a done context: %v", err)
	}
}

// TestCheckerTCP runs the Checker with the real prober against a listener
// that comes and goes.
func TestCheckerTCP(t *testing.T) {
	ln, addr := listen(t)
	results := make(chan error, 100)
	go serve(ln, nil, results)
	rec := newRecorder()
	c := New(nil, &TCPProber{}, rec.onChange)
	c.SetTargets([]Target{{ID: 1, Addr: addr, Config: Config{Interval: time.Second, Timeout: 900 * time.Millisecond, Rise: 1, Fall: 1}}})
	c.Initial(context.Background())
	if ev := rec.next(t); !ev.Up {
		t.Fatalf("initial %+v", ev)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	ln.Close()
	if ev := rec.next(t); ev.Up || ev.Reason != "connect: connection refused" {
		t.Fatalf("after close: %+v", ev)
	}
}
