package health

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
)

// HTTPProber checks that a backend answers an HTTP/1.1 GET with the
// expected status, like HAProxy's `option httpchk` with `http-check expect
// status` and keepalived's HTTP_GET. Only the status decides; headers and
// body are read (so the connection can end cleanly) but not judged.
//
// The request asks for "Connection: close", which an HTTP/1.1 server must
// honour by closing after its response (RFC 9112 §9.6). The probe reads the
// status line, the headers and up to 64 KiB of body, then closes as every
// prober does: FIN, drain until the backend's FIN or the deadline, close. A
// longer body is not cut off (that would make the kernel send a RST): it is
// drained with the rest.
//
// HTTPProber is a comparable value: SetTargets keeps a target's loop when
// given an equal one.
type HTTPProber struct {
	// Path is the request target, with its query if any; "" = "/". It must
	// start with "/" and hold no spaces or control characters (escape them).
	Path string
	// Status is the status code that means healthy; 0 = 200.
	Status int
	// Host is the Host header; "" = the backend's address ("198.18.0.21" on
	// port 80, "198.18.0.21:8080" otherwise), as curl sends for a URL with
	// an address in it.
	Host string
	// Dialer sets the source address or socket options; nil lets the route
	// choose.
	Dialer *net.Dialer
}

var _ Prober = HTTPProber{}

const (
	// maxHTTPHead bounds the status line and headers: eight times nginx's
	// default proxy_buffer_size (8 KiB), beyond which nginx itself rejects
	// an upstream's headers.
	maxHTTPHead = 64 << 10
	// maxHTTPBody bounds the body read through the HTTP framing; what
	// follows is drained as raw bytes.
	maxHTTPBody = 64 << 10
	// maxStatusLine bounds the first line, the one HTTPProber parses
	// itself; it is also the read buffer's size. A status line is a version,
	// a code and a reason phrase: 4 KiB is plenty.
	maxStatusLine = 4 << 10
)

// userAgent names the prober in the backend's access log.
const userAgent = "l4raw-health"

// Probe sends GET Path to addr and compares the response status with
// Status. Errors read "http: status 503, want 200", "http: connection
// closed before a response", "http: malformed status line \"SSH-2.0-...\"",
// or "connect: connection refused"; a deadline shows as a timeout.
func (p HTTPProber) Probe(ctx context.Context, addr netip.AddrPort) error {
	path, want, host := p.Path, p.Status, p.Host
	if path == "" {
		path = "/"
	}
	if want == 0 {
		want = http.StatusOK
	}
	if host == "" {
		host = addr.String()
		if addr.Port() == 80 {
			host = addr.Addr().String()
		}
	}
	if !validRequestTarget(path) {
		return fmt.Errorf("http: invalid path %s", strconv.Quote(path))
	}
	if !validHost(host) {
		return fmt.Errorf("http: invalid host %s", strconv.Quote(host))
	}
	conn, err := dial(ctx, p.Dialer, addr)
	if err != nil {
		return err
	}
	defer conn.closeGracefully()
	got, err := exchangeHTTP(conn, request(path, host))
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("http: status %d, want %d", got, want)
	}
	return nil
}

// request builds the probe's request. It carries no body and asks for no
// compression, so nothing in the reply needs decoding to be drained.
func request(path, host string) []byte {
	b := make([]byte, 0, 128+len(path)+len(host))
	b = append(b, "GET "...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\nUser-Agent: "+userAgent+"\r\nAccept: */*\r\nConnection: close\r\n\r\n"...)
	return b
}

// exchangeHTTP writes req on conn and reads the response's status line,
// headers and (bounded) body. It returns the status code.
func exchangeHTTP(conn io.ReadWriter, req []byte) (int, error) {
	if _, err := conn.Write(req); err != nil {
		return 0, fmt.Errorf("http: send request: %w", bareError(err))
	}
	lr := &io.LimitedReader{R: conn, N: maxHTTPHead}
	br := bufio.NewReaderSize(lr, maxStatusLine)
	line, err := br.ReadSlice('\n')
	switch {
	case err == nil:
	case errors.Is(err, io.EOF) && len(line) == 0:
		return 0, errors.New("http: connection closed before a response")
	case errors.Is(err, io.EOF) || errors.Is(err, bufio.ErrBufferFull):
		return 0, fmt.Errorf("http: malformed status line %s", shown(line))
	default:
		return 0, fmt.Errorf("http: read response: %w", bareError(err))
	}
	code, ok := parseStatusLine(line)
	if !ok {
		return 0, fmt.Errorf("http: malformed status line %s", shown(line))
	}
	// net/http frames the rest (headers, then Content-Length, chunked or
	// until close; none for 204 and 304). It reads the status line again,
	// so hand it back in front of the stream.
	rest := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(line), br), maxStatusLine)
	resp, err := http.ReadResponse(rest, nil)
	if err != nil {
		switch {
		case isTimeout(err):
			return 0, fmt.Errorf("http: read response headers: %w", bareError(err))
		case lr.N == 0:
			return 0, fmt.Errorf("http: response headers longer than %d bytes", maxHTTPHead)
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return 0, errors.New("http: connection closed in the response headers")
		}
		return 0, errors.New("http: malformed response headers")
	}
	// The body never changes the verdict: an error reading it (a stall, a
	// cut) only ends the reading.
	lr.N += maxHTTPBody
	_, _ = io.Copy(io.Discard, resp.Body)
	return code, nil
}

// parseStatusLine reads the code from `HTTP/1.x SP 3DIGIT [SP reason] CRLF`
// (RFC 9112 §4), accepting a bare LF and a missing reason as RFC 9112 §2.2
// allows a recipient to.
func parseStatusLine(line []byte) (int, bool) {
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[7] < '0' || line[7] > '9' || line[8] != ' ' {
		return 0, false
	}
	if len(line) > 12 && line[12] != ' ' {
		return 0, false
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, false
		}
		code = code*10 + int(c-'0')
	}
	return code, code >= 100
}

// validRequestTarget accepts an origin-form target (RFC 9112 §3.2.1): a
// "/" and then visible ASCII only; anything else must be percent-encoded.
func validRequestTarget(s string) bool {
	if s == "" || s[0] != '/' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// validHost accepts visible ASCII without spaces, what a uri-host with an
// optional port is made of (RFC 9110 §7.2): nothing that could end the
// header line or start another.
func validHost(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}
