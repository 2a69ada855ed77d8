package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"time"
)

// Result kinds, as printed and as keys of the JSON summaries.
const (
	kindOK      = "ok"
	kindRefused = "refused"
	kindReset   = "reset"
	kindTimeout = "timeout"
	kindOther   = "other"
)

// classify names the failure a load balancer test cares about: refused (a RST
// answered the SYN), reset (a RST after the handshake), timeout (nothing came
// back: a blackhole or a stall) or other.
func classify(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return kindOK
	case errors.Is(err, syscall.ECONNREFUSED):
		return kindRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return kindReset
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, syscall.ETIMEDOUT), errors.As(err, &ne) && ne.Timeout():
		return kindTimeout
	default:
		return kindOther
	}
}

// idleConn bounds every read and write by an inactivity timeout rather than
// a total one: a long transfer may take any time as long as it keeps moving,
// and a stalled one fails after idle.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c idleConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.idle)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c idleConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.idle)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// writeRequestHead writes an HTTP/1.1 request head asking the server to close
// the connection after the answer: every request of l4echo is one TCP
// connection, which is what a layer-4 balancer schedules. contentLength < 0
// means no body.
func writeRequestHead(w io.Writer, method string, u *url.URL, contentLength int64) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: l4echo\r\nConnection: close\r\n", method, u.RequestURI(), u.Host)
	if contentLength >= 0 {
		fmt.Fprintf(bw, "Content-Length: %d\r\n", contentLength)
	}
	bw.WriteString("\r\n")
	return bw.Flush()
}

// readResponse reads the response head from r and checks the status.
func readResponse(r *bufio.Reader, method string) (*http.Response, error) {
	resp, err := http.ReadResponse(r, &http.Request{Method: method})
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("http status %q", resp.Status)
	}
	return resp, nil
}
