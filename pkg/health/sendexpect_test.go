package health

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"time"
)

// echoHealth answers a "HEALTH CHECK" line with "OK", anything else with
// "ERR", and closes, as the classic echo check backends do.
func echoHealth(c *net.TCPConn, r *bufio.Reader) {
	line, err := r.ReadString('\n')
	if err != nil {
		return
	}
	if line == "HEALTH CHECK\r\n" {
		io.WriteString(c, "OK\r\n")
	} else {
		io.WriteString(c, "ERR unknown command\r\n")
	}
	c.CloseWrite()
}

func TestSendExpectProber(t *testing.T) {
	banner := func(text string) func(*net.TCPConn, *bufio.Reader) {
		return func(c *net.TCPConn, r *bufio.Reader) { io.WriteString(c, text) }
	}
	tests := []struct {
		name    string
		p       SendExpectProber
		handle  func(*net.TCPConn, *bufio.Reader)
		want    string // "" = healthy; "timeout" = an error that is a timeout
		timeout time.Duration
	}{
		{"echo", SendExpectProber{Send: "HEALTH CHECK\r\n", Expect: "OK"}, echoHealth, "", time.Second},
		{"wrong reply", SendExpectProber{Send: "STATUS\r\n", Expect: "OK"}, echoHealth, `send-expect: reply "ERR unknown command\r\n", want "OK"`, time.Second},
		{"banner", SendExpectProber{Expect: "220 "}, banner("220 mail.example ESMTP\r\n"), "", time.Second},
		{"banner in pieces", SendExpectProber{Expect: "SSH-2.0-"}, func(c *net.TCPConn, r *bufio.Reader) {
			for _, b := range []byte("SSH-2.0-OpenSSH\r\n") {
				c.Write([]byte{b})
				time.Sleep(time.Millisecond)
			}
		}, "", time.Second},
		{"wrong banner", SendExpectProber{Expect: "220 "}, banner("421 too busy\r\n"), `send-expect: reply "421 too busy\r\n", want "220 "`, time.Second},
		{"long wrong reply", SendExpectProber{Expect: "+PONG"}, banner(strings.Repeat("-ERR ", 100)),
			`send-expect: reply "` + strings.Repeat("-ERR ", 12) + `-ERR", want "+PONG"`, time.Second},
		{"closed before reply", SendExpectProber{Send: "x", Expect: "OK"}, func(c *net.TCPConn, r *bufio.Reader) { r.ReadByte(); c.CloseWrite() },
			"send-expect: connection closed before a reply", time.Second},
		{"reply ends early", SendExpectProber{Expect: "PONG"}, func(c *net.TCPConn, r *bufio.Reader) { io.WriteString(c, "PO"); c.CloseWrite() },
			`send-expect: reply "PO" ends early, want "PONG"`, time.Second},
		{"no reply", SendExpectProber{Send: "HEALTH CHECK\r\n", Expect: "OK"}, func(c *net.TCPConn, r *bufio.Reader) { time.Sleep(300 * time.Millisecond) },
			"timeout", 100 * time.Millisecond},
		{"partial reply then silence", SendExpectProber{Expect: "PONG"}, func(c *net.TCPConn, r *bufio.Reader) {
			io.WriteString(c, "PO")
			time.Sleep(300 * time.Millisecond)
		}, "timeout", 100 * time.Millisecond},
		{"send only", SendExpectProber{Send: "QUIT\r\n"}, func(c *net.TCPConn, r *bufio.Reader) { r.ReadString('\n'); c.CloseWrite() }, "", time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, results := rawServer(t, tt.handle)
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
			if tt.want != "timeout" {
				cleanEnd(t, results)
			}
		})
	}
}

func TestSendExpectProberRefused(t *testing.T) {
	ln, addr := listen(t)
	ln.Close()
	err, _ := probeWith(SendExpectProber{Send: "HEALTH CHECK\r\n", Expect: "OK"}, addr, 2*time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) || err.Error() != "connect: connection refused" {
		t.Fatalf("probe of a closed port: %v", err)
	}
}

// TestCheckerSendExpectTimeout checks the reason a silent backend gets.
func TestCheckerSendExpectTimeout(t *testing.T) {
	addr, _ := rawServer(t, func(c *net.TCPConn, r *bufio.Reader) { time.Sleep(time.Second) })
	rec := newRecorder()
	c := New(nil, nil, rec.onChange)
	c.SetTargets([]Target{{ID: 1, Addr: addr, Config: Config{Interval: time.Second, Timeout: 50 * time.Millisecond},
		Prober: SendExpectProber{Send: "HEALTH CHECK\r\n", Expect: "OK"}}})
	c.Initial(context.Background())
	if evs := rec.all(); len(evs) != 1 || evs[0].Up || evs[0].Reason != "timeout after 50ms" {
		t.Fatalf("events %+v", evs)
	}
}

func TestExpectReply(t *testing.T) {
	for _, tt := range []struct {
		reply, want, err string
	}{
		{"OK\r\n", "OK", ""},
		{"OK", "OK", ""},
		{"OKAY and more", "OK", ""},
		{"anything", "", ""},
		{"", "", ""},
		{"NO", "OK", `send-expect: reply "NO", want "OK"`},
		{"O", "OK", `send-expect: reply "O" ends early, want "OK"`},
		{"", "OK", "send-expect: connection closed before a reply"},
		{"\x00\xff", "OK", `send-expect: reply "\x00\xff", want "OK"`},
	} {
		if got := errText(expectReply(strings.NewReader(tt.reply), tt.want)); got != tt.err {
			t.Errorf("expectReply(%q, %q) = %s, want %s", tt.reply, tt.want, got, tt.err)
		}
		// Split differently, a wrong reply fails as soon as a byte differs
		// and shows only what came so far; the verdict is the same.
		for _, r := range []io.Reader{iotest.OneByteReader(strings.NewReader(tt.reply)), iotest.DataErrReader(strings.NewReader(tt.reply))} {
			if err := expectReply(r, tt.want); (err == nil) != (tt.err == "") {
				t.Errorf("expectReply(%T %q, %q) = %v, want %s", r, tt.reply, tt.want, err, tt.err)
			}
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// FuzzExpectReply checks that a reply is accepted exactly when it starts
// with the expected prefix, however the reads split it.
func FuzzExpectReply(f *testing.F) {
	f.Add([]byte("OK\r\n"), "OK", true)
	f.Add([]byte("ERR"), "OK", false)
	f.Add([]byte(""), "x", true)
	f.Add([]byte("220 ready"), "220 ", false)
	f.Fuzz(func(t *testing.T, reply []byte, want string, oneByte bool) {
		var r io.Reader = strings.NewReader(string(reply))
		if oneByte {
			r = iotest.OneByteReader(r)
		}
		err := expectReply(r, want)
		if ok := strings.HasPrefix(string(reply), want); ok != (err == nil) {
			t.Fatalf("reply %q, want %q: %v", reply, want, err)
		}
		if err != nil && (strings.ContainsAny(err.Error(), "\r\n") || !strings.HasPrefix(err.Error(), "send-expect: ")) {
			t.Fatalf("error %q", err)
		}
	})
}
