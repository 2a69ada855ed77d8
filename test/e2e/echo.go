//go:build e2e

package e2e

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// GetSummary is the JSON summary of "l4echo get --json".
type GetSummary struct {
	URL    string `json:"url"`
	Count  int    `json:"count"`
	OK     int    `json:"ok"`
	Errors struct {
		Refused int `json:"refused"`
		Reset   int `json:"reset"`
		Timeout int `json:"timeout"`
		Other   int `json:"other"`
	} `json:"errors"`
	Backends        map[string]int `json:"backends"`   // answers per backend name
	RemoteIPs       map[string]int `json:"remote_ips"` // client IP as the backends saw it
	DistinctRemotes int            `json:"distinct_remotes"`
	Latency         struct {
		P50 float64 `json:"p50"`
		P99 float64 `json:"p99"`
		Max float64 `json:"max"`
	} `json:"latency_ms"`
	Seconds      float64  `json:"seconds"`
	ErrorSamples []string `json:"error_samples"`
}

// Transfer is the JSON result of "l4echo download --json" and "upload --json".
type Transfer struct {
	Op             string  `json:"op"`
	URL            string  `json:"url"`
	Bytes          uint64  `json:"bytes"`
	Seconds        float64 `json:"seconds"`
	Gbps           float64 `json:"gbps"`
	OK             bool    `json:"ok"`
	Kind           string  `json:"kind"` // ok, refused, reset, timeout, other
	Error          string  `json:"error"`
	MismatchOffset int64   `json:"mismatch_offset"`
}

// ConnectResult is the JSON result of "l4echo connect --json".
type ConnectResult struct {
	Addr   string  `json:"addr"`
	Result string  `json:"result"` // ok, refused, reset, timeout, other
	MS     float64 `json:"ms"`
	Error  string  `json:"error"`
}

// echoJSON runs l4echo in n with --json and --cc, and decodes its stdout.
// Exit code 1 (the operation failed) is part of the result, not a test
// failure; anything else is.
func echoJSON(t testing.TB, n *NS, v any, args ...string) {
	t.Helper()
	argv := append([]string{L4echo(t)}, args...)
	argv = append(argv, "--json", "--cc", congestionControl)
	out, code := n.RunStatus(t, argv...)
	if code != 0 && code != 1 {
		t.Fatalf("%s: l4echo %v: exit code %d: %s", n.Name, args, code, out)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%s: l4echo %v: decode %q: %v", n.Name, args, out, err)
	}
}

// EchoGet runs "l4echo get" from n: count requests to url, each on a new
// connection, parallel at a time. extra flags (e.g. "--timeout", "1s") are
// passed on. Failed requests are in the summary, not a test failure.
func (n *NS) EchoGet(t testing.TB, url string, count, parallel int, extra ...string) GetSummary {
	t.Helper()
	var s GetSummary
	echoJSON(t, n, &s, append([]string{"get", "--url", url, "--count", strconv.Itoa(count),
		"--parallel", strconv.Itoa(parallel)}, extra...)...)
	return s
}

// EchoDownload runs "l4echo download" of size bytes from the l4echo server
// at url (base URL) and returns its result.
func (n *NS) EchoDownload(t testing.TB, url string, size uint64, extra ...string) Transfer {
	t.Helper()
	var r Transfer
	echoJSON(t, n, &r, append([]string{"download", "--url", url, "--bytes", strconv.FormatUint(size, 10)}, extra...)...)
	return r
}

// EchoUpload runs "l4echo upload" of size bytes to the l4echo server at url.
func (n *NS) EchoUpload(t testing.TB, url string, size uint64, extra ...string) Transfer {
	t.Helper()
	var r Transfer
	echoJSON(t, n, &r, append([]string{"upload", "--url", url, "--bytes", strconv.FormatUint(size, 10)}, extra...)...)
	return r
}

// EchoConnect runs "l4echo connect" from n: one TCP connect to addr.
func (n *NS) EchoConnect(t testing.TB, addr netip.AddrPort, timeout time.Duration) ConnectResult {
	t.Helper()
	var r ConnectResult
	echoJSON(t, n, &r, "connect", "--addr", addr.String(), "--timeout", timeout.String())
	return r
}

// URL returns http://addr/path for an l4echo server.
func URL(addr netip.AddrPort, path string) string {
	return "http://" + addr.String() + path
}

// WaitConnect polls "l4echo connect" from n until addr accepts a
// connection, for up to within (e.g. until l4raw forwards the VIP). It fails
// the test with the last result if addr never does.
func (n *NS) WaitConnect(t testing.TB, addr netip.AddrPort, within time.Duration) {
	t.Helper()
	const attempt, pause = 200 * time.Millisecond, 50 * time.Millisecond
	deadline := time.Now().Add(within)
	var last ConnectResult
	for i := 0; i < int(within/pause)+1; i++ {
		if last = n.EchoConnect(t, addr, attempt); last.Result == "ok" {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(pause)
	}
	t.Fatalf("%s: %s not accepting connections within %v: last %s (%s)", n.Name, addr, within, last.Result, last.Error)
}
