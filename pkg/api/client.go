package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// ErrUnreachable means nothing that speaks the l4raw API answered at the
// client's address: the connection failed, or something else answered.
var ErrUnreachable = errors.New("no l4raw API")

// clientTimeout bounds one request. The slowest answer is a reload or a
// full flow page, both well under a second on the daemons measured; 30 s
// only catches a daemon that is stuck.
const clientTimeout = 30 * time.Second

// maxAnswer bounds what the client reads: a full flow page is about 2 MB.
const maxAnswer = 64 << 20

// Client talks to the API of a running l4raw. Its methods mirror
// Controller's, with a context and an error: the error wraps ErrNotFound,
// ErrInvalid or ErrExists when the daemon answered with them, is an *Error
// for any other answer the daemon refused, and wraps ErrUnreachable when no
// daemon answered.
type Client struct {
	addr string // as given, for messages
	base string // scheme://host:port
	hc   *http.Client
}

// ClientOption changes how a Client connects.
type ClientOption func(*Client)

// WithHTTPClient makes the Client send its requests with hc (its own
// transport and timeout) instead of a default client with a 30 s timeout.
func WithHTTPClient(hc *http.Client) ClientOption { return func(c *Client) { c.hc = hc } }

// NewClient returns a client for the API at addr: "HOST:PORT" or an
// "http://HOST:PORT" URL.
func NewClient(addr string, opts ...ClientOption) *Client {
	base, host := "http://"+addr, addr
	if i := strings.Index(addr, "://"); i >= 0 {
		base, host = addr, addr[i+3:]
	}
	c := &Client{
		addr: strings.TrimSuffix(host, "/"),
		base: strings.TrimSuffix(base, "/"),
		hc:   &http.Client{Timeout: clientTimeout},
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Addr returns the address the client talks to.
func (c *Client) Addr() string { return c.addr }

// Error is an API error answer: the HTTP status and the daemon's message.
type Error struct {
	StatusCode int
	Message    string
}

func (e *Error) Error() string { return e.Message }

// Unwrap maps the status back to the sentinel the daemon's Controller
// returned, so errors.Is works across the API.
func (e *Error) Unwrap() error {
	switch e.StatusCode {
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusBadRequest:
		return ErrInvalid
	case http.StatusConflict:
		return ErrExists
	}
	return nil
}

// Healthz returns nil if the daemon's API answers.
func (c *Client) Healthz(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/healthz", nil)
	if err != nil {
		return fmt.Errorf("api: address %q: %w", c.addr, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.transportError(http.MethodGet, "/healthz", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w at %s: GET /healthz answered with HTTP %d", ErrUnreachable, c.addr, resp.StatusCode)
	}
	return nil
}

// Status returns the daemon's version, table use and counters.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/api/v1/status", nil, &st)
	return st, err
}

// Services returns every service with its backends.
func (c *Client) Services(ctx context.Context) ([]ServiceInfo, error) {
	var s []ServiceInfo
	err := c.do(ctx, http.MethodGet, "/api/v1/services", nil, &s)
	return s, err
}

// Service returns one service with its backends.
func (c *Client) Service(ctx context.Context, name string) (ServiceInfo, error) {
	var s ServiceInfo
	err := c.do(ctx, http.MethodGet, "/api/v1/services/"+url.PathEscape(name), nil, &s)
	return s, err
}

// Backends returns the backends of one service.
func (c *Client) Backends(ctx context.Context, service string) ([]BackendInfo, error) {
	var b []BackendInfo
	err := c.do(ctx, http.MethodGet, "/api/v1/services/"+url.PathEscape(service)+"/backends", nil, &b)
	return b, err
}

// AddBackend adds a backend to a service and returns it as the daemon now
// shows it.
func (c *Client) AddBackend(ctx context.Context, service string, addr netip.AddrPort, weight int) (BackendInfo, error) {
	var b BackendInfo
	body := addRequest{Address: FormatBackend(addr), Weight: &weight}
	err := c.do(ctx, http.MethodPost, "/api/v1/services/"+url.PathEscape(service)+"/backends", body, &b)
	return b, err
}

// RemoveBackend removes a backend from a service and returns it as it was
// just before: its totals and the connections it still had.
func (c *Client) RemoveBackend(ctx context.Context, service string, addr netip.AddrPort) (BackendInfo, error) {
	var b BackendInfo
	err := c.do(ctx, http.MethodDelete, backendPath(service, addr), nil, &b)
	return b, err
}

// SetWeight changes a backend's weight.
func (c *Client) SetWeight(ctx context.Context, service string, addr netip.AddrPort, weight int) (BackendInfo, error) {
	var b BackendInfo
	err := c.do(ctx, http.MethodPatch, backendPath(service, addr), patchRequest{Weight: &weight}, &b)
	return b, err
}

// SetState changes a backend's administrative state (StateReady,
// StateDrain, StateMaint).
func (c *Client) SetState(ctx context.Context, service string, addr netip.AddrPort, state string) (BackendInfo, error) {
	var b BackendInfo
	err := c.do(ctx, http.MethodPatch, backendPath(service, addr), patchRequest{State: &state}, &b)
	return b, err
}

// Flows returns one page of the connection table. limit 0 takes the
// daemon's default (DefaultFlowLimit).
func (c *Client) Flows(ctx context.Context, f FlowFilter, offset, limit int) (FlowPage, error) {
	q := url.Values{}
	if f.Service != "" {
		q.Set("service", f.Service)
	}
	if f.Backend != "" {
		q.Set("backend", f.Backend)
	}
	if offset != 0 {
		q.Set("offset", strconv.Itoa(offset))
	}
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/api/v1/flows"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var p FlowPage
	err := c.do(ctx, http.MethodGet, path, nil, &p)
	return p, err
}

// Reload makes the daemon reload its configuration and returns its status
// afterwards.
func (c *Client) Reload(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodPost, "/api/v1/reload", nil, &st)
	return st, err
}

// do sends one request with an optional JSON body and decodes a JSON
// answer into out. Unknown fields in answers are ignored, so an older
// client still reads a newer daemon.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("api: %s %s: encode request: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("api: address %q: %w", c.addr, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.transportError(method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("api: %s %s at %s: read answer: %w", method, path, c.addr, err)
	}
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct != "application/json" {
		return fmt.Errorf("%w at %s: %s %s answered with HTTP %d (%s)", ErrUnreachable, c.addr, method, path, resp.StatusCode, orNone(ct))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e errorBody
		if err := json.Unmarshal(data, &e); err != nil || e.Error == "" {
			e.Error = fmt.Sprintf("%s %s: HTTP %d", method, path, resp.StatusCode)
		}
		return &Error{StatusCode: resp.StatusCode, Message: e.Error}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("api: %s %s at %s: decode answer: %w", method, path, c.addr, err)
	}
	return nil
}

// transportError turns a failed round trip into one line. A failure to
// connect is ErrUnreachable with the system's reason ("connection
// refused"); a failure after the request went out is not, because the
// daemon may have acted on it.
func (c *Client) transportError(method, path string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		cause := oe.Err
		var sys *os.SyscallError
		if errors.As(cause, &sys) { // "connect: connection refused" -> "connection refused"
			cause = sys.Err
		}
		return fmt.Errorf("%w at %s: %w", ErrUnreachable, c.addr, cause)
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return fmt.Errorf("%w at %s: %w", ErrUnreachable, c.addr, dnsErr)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
		if ue.Timeout() {
			return fmt.Errorf("api: %s %s at %s: no answer within %v: %w", method, path, c.addr, c.hc.Timeout, err)
		}
	}
	return fmt.Errorf("api: %s %s at %s: %w", method, path, c.addr, err)
}

func orNone(s string) string {
	if s == "" {
		return "no content type"
	}
	return s
}
