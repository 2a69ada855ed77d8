//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/l4raw/l4raw/pkg/api"
)

// cfgBalancer is l4raw started with --config, driven through its API.
type cfgBalancer struct {
	*balancer
	file string // the config file; rewrite it and reload
}

// startConfigured writes yaml to a config file of the test's own and starts
// l4raw on it in ns ("ip netns exec" sees the same filesystem).
func startConfigured(t *testing.T, ns *NS, yaml string) *cfgBalancer {
	t.Helper()
	file := filepath.Join(t.TempDir(), "l4raw.yaml")
	writeConfig(t, file, yaml)
	return &cfgBalancer{balancer: startL4raw(t, ns, "--config", file), file: file}
}

func writeConfig(t *testing.T, file, yaml string) {
	t.Helper()
	// Write and rename, so a reload never reads a half-written file.
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}

// rewrite replaces the config file; the daemon reads it at the next reload.
func (b *cfgBalancer) rewrite(t *testing.T, yaml string) {
	t.Helper()
	writeConfig(t, b.file, yaml)
}

// sighup asks the daemon to reload and waits for the log line that says how
// the reload went (the n-th "reloaded" or "reload refused" line).
func (b *cfgBalancer) sighup(t *testing.T) string {
	t.Helper()
	before := len(logLines(b.Output(), "reloaded")) + len(logLines(b.Output(), "reload refused; the running configuration stays"))
	if err := b.Signal(syscall.SIGHUP); err != nil {
		t.Fatalf("SIGHUP: %v", err)
	}
	const within = 10 * time.Second // a reload resolves new next hops, bounded by neigh's 3 s resolve timeout
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		ok := logLines(b.Output(), "reloaded")
		bad := logLines(b.Output(), "reload refused; the running configuration stays")
		if len(ok)+len(bad) > before {
			if len(bad) > 0 && (len(ok) == 0 || bad[len(bad)-1].at.After(ok[len(ok)-1].at)) {
				return "refused"
			}
			return "reloaded"
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no reload log line %v after SIGHUP", within)
	return ""
}

// ctl runs "l4raw ctl ARGS" inside the balancer's namespace, where the API
// listens on its default loopback address.
func (b *cfgBalancer) ctl(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	stdout, stderr, code, err := b.ns.exec(append([]string{L4raw(t), "ctl"}, args...))
	if err != nil {
		t.Fatalf("%s: l4raw ctl %s: %v", b.ns.Name, strings.Join(args, " "), err)
	}
	return stdout, stderr, code
}

// ctlJSON runs "l4raw ctl --json ARGS" and decodes its answer into v; any
// exit code but 0 fails the test.
func (b *cfgBalancer) ctlJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	stdout, stderr, code := b.ctl(t, append([]string{"--json"}, args...)...)
	if code != 0 {
		t.Fatalf("l4raw ctl --json %s: exit code %d: %s", strings.Join(args, " "), code, strings.TrimSpace(stderr))
	}
	if err := json.Unmarshal([]byte(stdout), v); err != nil {
		t.Fatalf("l4raw ctl --json %s: decode %q: %v", strings.Join(args, " "), stdout, err)
	}
}

// backends returns the backends of one service as "ctl backends" shows them.
func (b *cfgBalancer) backends(t *testing.T, service string) map[string]api.BackendInfo {
	t.Helper()
	var bes []api.BackendInfo
	b.ctlJSON(t, &bes, "backends", service)
	m := make(map[string]api.BackendInfo, len(bes))
	for _, be := range bes {
		m[be.Address] = be
	}
	return m
}

// backend returns one backend of a service; a missing one fails the test.
func (b *cfgBalancer) backend(t *testing.T, service, addr string) api.BackendInfo {
	t.Helper()
	be, ok := b.backends(t, service)[addr]
	if !ok {
		t.Fatalf("service %s has no backend %s", service, addr)
	}
	return be
}

// flows returns the first page (up to 1000) of the connection table.
func (b *cfgBalancer) flows(t *testing.T) api.FlowPage {
	t.Helper()
	var p api.FlowPage
	b.ctlJSON(t, &p, "flows", "--limit", "1000")
	return p
}

// waitHealth polls "ctl backends" until the backend's health is want.
func (b *cfgBalancer) waitHealth(t *testing.T, service, addr, want string, within time.Duration) api.BackendInfo {
	t.Helper()
	const pause = 100 * time.Millisecond
	deadline := time.Now().Add(within)
	var be api.BackendInfo
	for i := 0; i < int(within/pause)+1; i++ {
		if be = b.backend(t, service, addr); be.Health == want {
			return be
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(pause)
	}
	t.Fatalf("service %s backend %s: health %s (%s) after %v, want %s", service, addr, be.Health, be.HealthReason, within, want)
	return be
}

// metrics scrapes the daemon's Prometheus endpoint from inside its
// namespace.
func (b *cfgBalancer) metrics(t *testing.T) promMetrics {
	t.Helper()
	out := b.ns.Run(t, "curl", "-sS", "--fail", "--max-time", "10", "http://"+api.DefaultAddr+"/metrics")
	m, err := parseProm(out)
	if err != nil {
		t.Fatalf("metrics: %v\n%s", err, out)
	}
	return m
}

// promSample is one line of the Prometheus text format.
type promSample struct {
	name   string
	labels map[string]string
	value  float64
}

type promMetrics []promSample

// parseProm reads the Prometheus text exposition format (version 0.0.4):
// "name{k="v",...} value" lines; comments and blank lines are skipped. It
// covers what client_golang writes: no timestamps, label values with \\, \"
// and \n escapes.
func parseProm(s string) (promMetrics, error) {
	var out promMetrics
	for i, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' {
			continue
		}
		sp := promSample{labels: map[string]string{}}
		rest := l
		if j := strings.IndexAny(rest, "{ "); j < 0 {
			return nil, fmt.Errorf("line %d: no value: %q", i+1, l)
		} else {
			sp.name, rest = rest[:j], rest[j:]
		}
		if strings.HasPrefix(rest, "{") {
			rest = rest[1:]
			for !strings.HasPrefix(rest, "}") {
				eq := strings.Index(rest, "=")
				if eq < 0 || eq+1 >= len(rest) || rest[eq+1] != '"' {
					return nil, fmt.Errorf("line %d: bad labels: %q", i+1, l)
				}
				key := rest[:eq]
				q, err := strconv.QuotedPrefix(rest[eq+1:])
				if err != nil {
					return nil, fmt.Errorf("line %d: bad label value: %q", i+1, l)
				}
				v, _ := strconv.Unquote(q)
				sp.labels[key] = v
				rest = strings.TrimPrefix(rest[eq+1+len(q):], ",")
			}
			rest = rest[1:]
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: value: %v", i+1, err)
		}
		sp.value = v
		out = append(out, sp)
	}
	return out, nil
}

// all returns the samples of a metric whose labels include match.
func (m promMetrics) all(name string, match map[string]string) []promSample {
	var out []promSample
next:
	for _, s := range m {
		if s.name != name {
			continue
		}
		for k, v := range match {
			if s.labels[k] != v {
				continue next
			}
		}
		out = append(out, s)
	}
	return out
}

// sum adds up the samples of a metric whose labels include match.
func (m promMetrics) sum(name string, match map[string]string) float64 {
	var v float64
	for _, s := range m.all(name, match) {
		v += s.value
	}
	return v
}

// logLine is one line of l4raw's text log (log/slog's TextHandler).
type logLine struct {
	at    time.Time
	msg   string
	attrs map[string]string
	raw   string
}

// slogTime is the time format of slog's TextHandler (RFC 3339 with
// milliseconds).
const slogTime = "2006-01-02T15:04:05.000Z07:00"

// logLines returns the lines of out whose msg is msg, parsed, in order.
func logLines(out, msg string) []logLine {
	var lines []logLine
	for _, l := range strings.Split(out, "\n") {
		attrs := parseLogfmt(l)
		if attrs == nil || attrs["msg"] != msg {
			continue
		}
		at, _ := time.Parse(slogTime, attrs["time"])
		lines = append(lines, logLine{at: at, msg: msg, attrs: attrs, raw: l})
	}
	return lines
}

// logLinesFor is logLines narrowed to lines whose attribute key is value.
func logLinesFor(out, msg, key, value string) []logLine {
	var lines []logLine
	for _, l := range logLines(out, msg) {
		if l.attrs[key] == value {
			lines = append(lines, l)
		}
	}
	return lines
}

// parseLogfmt reads key=value pairs as slog's TextHandler writes them
// (values quoted with Go syntax when they need it); nil if l is not such a
// line.
func parseLogfmt(l string) map[string]string {
	if !strings.HasPrefix(l, "time=") {
		return nil
	}
	m := map[string]string{}
	for rest := l; rest != ""; {
		rest = strings.TrimLeft(rest, " ")
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			break
		}
		key, val := rest[:eq], rest[eq+1:]
		if strings.HasPrefix(val, `"`) {
			q, err := strconv.QuotedPrefix(val)
			if err != nil {
				return m
			}
			m[key], _ = strconv.Unquote(q)
			rest = val[len(q):]
			continue
		}
		end := strings.IndexByte(val, ' ')
		if end < 0 {
			end = len(val)
		}
		m[key], rest = val[:end], val[end:]
	}
	return m
}

// startDownload runs "l4echo download" from n in the background; wait for
// its result with transferResult.
func startDownload(t *testing.T, n *NS, url string, size, rate uint64) *Proc {
	t.Helper()
	return n.Start(t, L4echo(t), "download", "--url", url, "--bytes", strconv.FormatUint(size, 10),
		"--rate", strconv.FormatUint(rate, 10), "--json", "--cc", congestionControl)
}

// transferResult waits up to within for a background transfer and decodes
// its JSON result.
func transferResult(t *testing.T, p *Proc, within time.Duration) Transfer {
	t.Helper()
	code, err := p.Wait(within)
	if err != nil {
		t.Fatal(err)
	}
	var r Transfer
	if err := json.Unmarshal([]byte(p.Stdout()), &r); err != nil {
		t.Fatalf("%s: exit code %d: decode %q: %v", p, code, p.Stdout(), err)
	}
	return r
}

// clientFlow finds the connection of client ip in the table, in state
// ESTABLISHED; it polls briefly because a transfer started in the
// background may not have connected yet.
func (b *cfgBalancer) clientFlow(t *testing.T, client netip.Addr, within time.Duration) api.FlowInfo {
	t.Helper()
	const pause = 50 * time.Millisecond
	deadline := time.Now().Add(within)
	var last api.FlowPage
	for i := 0; i < int(within/pause)+1; i++ {
		last = b.flows(t)
		var found []api.FlowInfo
		for _, f := range last.Flows {
			if ap, err := netip.ParseAddrPort(f.Client); err == nil && ap.Addr() == client && f.State == "ESTABLISHED" {
				found = append(found, f)
			}
		}
		if len(found) > 1 {
			t.Fatalf("%d established flows of %s, want 1: %+v", len(found), client, found)
		}
		if len(found) == 1 {
			return found[0]
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(pause)
	}
	t.Fatalf("no established flow of %s within %v: %+v", client, within, last)
	return api.FlowInfo{}
}

// serveOn starts "l4echo serve" on a backend at listen, as StartBackends
// does, and returns once it listens.
func serveOn(t *testing.T, be *NS, listen netip.AddrPort) *Proc {
	t.Helper()
	p := be.Start(t, L4echo(t), "serve", "--listen", listen.String(), "--name", be.Role, "--cc", congestionControl)
	p.WaitFor(t, "msg=serving", serveReady)
	return p
}

// binomialBound is k standard deviations of a binomial count: n trials with
// probability p each.
func binomialBound(n int, p, k float64) float64 {
	return k * math.Sqrt(float64(n)*p*(1-p))
}

// lanWithVIP builds a LAN with n backends and puts the VIP on the balancer.
func lanWithVIP(t *testing.T, n int) *LAN {
	t.Helper()
	lan := NewLAN(t, n)
	lan.LB.Run(t, "ip", "addr", "add", lan.VIP.String()+"/32", "dev", lan.Ifname)
	return lan
}

// roleOf maps a backend's address (as the API writes it) to its name.
func roleOf(lan *LAN, port uint16) map[string]string {
	m := map[string]string{}
	for i, a := range lan.BackendAddrs(port) {
		m[a.String()] = lan.Backends[i].Role
	}
	return m
}

func vipPortURL(vip netip.Addr, port uint16) string { return URL(netip.AddrPortFrom(vip, port), "/") }
