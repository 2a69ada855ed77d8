//go:build e2e

package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/l4raw/l4raw/pkg/api"
)

// TestControlDrainDuringTransfer: a backend drained with "ctl drain" while a
// long download runs from it takes no new connection, and the download
// completes intact.
func TestControlDrainDuringTransfer(t *testing.T) {
	lan := lanWithVIP(t, 2)
	lan.StartBackends(t, 8080)
	bes := lan.BackendAddrs(8080)
	b := startConfigured(t, lan.LB, fmt.Sprintf(`
services:
  - name: web
    vip: %s
    port: 80
    backends: [%s, %s]
`, lan.VIP, bes[0], bes[1]))

	// 64 MiB read at 8 MiB/s lasts about 8 s: long enough for the drain and
	// 20 requests (well under a second each here) to happen while it runs.
	const size, rate = 64 << 20, 8 << 20
	dl := startDownload(t, lan.Client, vipURL(lan.VIP), size, rate)
	fl := b.clientFlow(t, lan.ClientIP, 5*time.Second)
	roles := roleOf(lan, 8080)
	drained := fl.Backend
	if _, ok := roles[drained]; !ok {
		t.Fatalf("the download's flow goes to %q, not a backend: %+v", drained, fl)
	}
	other := bes[0].String()
	if other == drained {
		other = bes[1].String()
	}

	var be api.BackendInfo
	b.ctlJSON(t, &be, "drain", "web", drained)
	if be.State != api.StateDrain || be.Active < 1 {
		t.Errorf("ctl drain answered state %q with %d active connections, want drain with the download's", be.State, be.Active)
	}
	before := b.backend(t, "web", drained).Conns

	s := lan.Client.EchoGet(t, vipURL(lan.VIP), 20, 1)
	if s.OK != 20 || s.Backends[roles[other]] != 20 {
		t.Errorf("20 requests after draining %s (%s): %d ok, spread %v; want all 20 on %s", drained, roles[drained], s.OK, s.Backends, roles[other])
	}
	if !dl.Running() {
		t.Errorf("the download ended before the 20 requests did: the drain did not happen during the transfer")
	}
	got := b.backend(t, "web", drained)
	if got.State != api.StateDrain {
		t.Errorf("ctl backends: %s state %q, want drain", drained, got.State)
	}
	if got.Conns != before {
		t.Errorf("drained backend's conns_total went from %d to %d", before, got.Conns)
	}

	// 64 MiB at 8 MiB/s is 8 s; 60 s leaves room for a loaded VM.
	r := transferResult(t, dl, 60*time.Second)
	if !r.OK || r.Bytes != size {
		t.Fatalf("download from the drained backend: %+v", r)
	}
	t.Logf("download of %d MiB from the drained backend completed in %.1f s", size>>20, r.Seconds)
	noKernelRSTs(t, lan.LB)
}

// TestControlAddBackend: "ctl add" puts a third backend into rotation.
func TestControlAddBackend(t *testing.T) {
	lan := lanWithVIP(t, 3)
	lan.StartBackends(t, 8080)
	bes := lan.BackendAddrs(8080)
	b := startConfigured(t, lan.LB, fmt.Sprintf(`
health: { interval: 1s, timeout: 500ms }
services:
  - name: web
    vip: %s
    port: 80
    backends: [%s, %s]
`, lan.VIP, bes[0], bes[1]))
	if s := lan.Client.EchoGet(t, vipURL(lan.VIP), 10, 1); s.OK != 10 || s.Backends["be3"] != 0 {
		t.Fatalf("before the add: %+v", s)
	}

	var be api.BackendInfo
	b.ctlJSON(t, &be, "add", "web", bes[2].String())
	if be.Address != bes[2].String() || be.State != api.StateReady || be.Weight != 1 {
		t.Errorf("ctl add answered %+v, want %s ready with weight 1", be, bes[2])
	}
	added := time.Now()
	// The new backend takes connections once its first check passes: it
	// runs as soon as the checker has the target (interval 1 s, timeout
	// 500 ms); 10 s is generous for a shared VM.
	const within = 10 * time.Second
	var s GetSummary
	for i := 0; ; i++ {
		s = lan.Client.EchoGet(t, vipURL(lan.VIP), 3, 1)
		if s.Backends["be3"] > 0 {
			break
		}
		if time.Since(added) > within || i > 100 {
			t.Fatalf("be3 took no connection within %v of ctl add: %+v, backend %+v", within, s, b.backend(t, "web", bes[2].String()))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("be3 took its first connection %.2f s after ctl add", time.Since(added).Seconds())

	// Round robin over three backends: 30 sequential requests are 10 each,
	// wherever the rotation stands.
	s = lan.Client.EchoGet(t, vipURL(lan.VIP), 30, 1, "--expect-backends", "3")
	for i := 1; i <= 3; i++ {
		if got := s.Backends[fmt.Sprintf("be%d", i)]; s.OK != 30 || got != 10 {
			t.Errorf("after the add: be%d answered %d of %d ok, want 10 of 30 (spread %v)", i, got, s.OK, s.Backends)
		}
	}
	if h := b.backend(t, "web", bes[2].String()); h.Health != api.HealthUp {
		t.Errorf("added backend: health %s (%s)", h.Health, h.HealthReason)
	}
	noKernelRSTs(t, lan.LB)
}

// TestControlFlapRiseFall: a backend down for one check interval stays up
// (fall 3); down for good it goes down on the third failed check, not
// before two intervals passed; back, it is up on the second success.
func TestControlFlapRiseFall(t *testing.T) {
	lan := lanWithVIP(t, 2)
	procs := lan.StartBackends(t, 8080)
	bes := lan.BackendAddrs(8080)
	const interval = 500 * time.Millisecond
	// passive: 0: only the active checks count (there is no client traffic
	// anyway).
	b := startConfigured(t, lan.LB, fmt.Sprintf(`
health: { interval: 500ms, timeout: 300ms, rise: 2, fall: 3, passive: 0 }
services:
  - name: web
    vip: %s
    port: 80
    backends: [%s, %s]
`, lan.VIP, bes[0], bes[1]))
	target := bes[1]
	addr := target.String()
	b.waitHealth(t, "web", addr, api.HealthUp, 5*time.Second)
	be := lan.Backends[1]

	// One interval without a server: at most two checks can fail (the
	// outage is shorter than two intervals), fewer than fall.
	rsts := be.TCPOutRsts(t)
	start := time.Now()
	procs[1].Stop()
	time.Sleep(interval) // the listener is closed for at least one interval: one check at least meets it
	procs[1] = serveOn(t, be, target)
	outage := time.Since(start)
	t.Logf("short outage: %v", outage.Round(time.Millisecond))
	if outage >= 2*interval {
		t.Fatalf("the short outage lasted %v, not under two intervals (%v): the machine is too slow for this test", outage, 2*interval)
	}
	// The backend's kernel refused the failed checks with RSTs: there is
	// no other traffic toward it.
	if n := be.TCPOutRsts(t) - rsts; n < 1 {
		t.Errorf("no check met the closed port during the %v outage (backend sent %d RSTs)", outage, n)
	}
	// Three more intervals: a failure streak would have ended by then.
	time.Sleep(3 * interval)
	if l := logLinesFor(b.Output(), "backend down", "addr", addr); len(l) != 0 {
		t.Errorf("a %v outage took the backend down: %s", outage, l[0].raw)
	}
	if h := b.backend(t, "web", addr); h.Health != api.HealthUp {
		t.Errorf("after the short outage: health %s (%s), want up", h.Health, h.HealthReason)
	}

	// Down for good.
	stopped := time.Now()
	procs[1].Stop()
	// Three failed checks: within three intervals and a timeout, plus 3 s
	// for a loaded machine.
	const downWithin = 3*interval + 300*time.Millisecond + 3*time.Second
	h := b.waitHealth(t, "web", addr, api.HealthDown, downWithin)
	downs := logLinesFor(b.Output(), "backend down", "addr", addr)
	if len(downs) != 1 {
		t.Fatalf("%d \"backend down\" lines for %s, want 1", len(downs), addr)
	}
	d := downs[0]
	if d.attrs["failures"] != "3" || !strings.Contains(d.attrs["reason"], "connection refused") {
		t.Errorf("down line %q: want failures=3 and a connection refused reason", d.raw)
	}
	// The first failed check comes after the stop, and the third two
	// intervals after the first: the log line cannot be earlier. 50 ms
	// covers a check that starts late after its tick and the log's
	// millisecond resolution.
	const jitter = 50 * time.Millisecond
	if took := d.at.Sub(stopped); took < 2*interval-jitter {
		t.Errorf("down %v after the stop, before three checks (two intervals, %v) could fail", took, 2*interval)
	} else {
		t.Logf("down %v after the stop (checks every %v, fall 3)", took.Round(time.Millisecond), interval)
	}
	if !strings.Contains(h.HealthReason, "connection refused") {
		t.Errorf("ctl backends: health reason %q, want the failed check's", h.HealthReason)
	}

	// Back: up on the second success, one interval after the first.
	restarted := time.Now()
	procs[1] = serveOn(t, be, target)
	h = b.waitHealth(t, "web", addr, api.HealthUp, 2*interval+3*time.Second)
	ups := logLinesFor(b.Output(), "backend up", "addr", addr)
	if len(ups) == 0 {
		t.Fatalf("no \"backend up\" line for %s", addr)
	}
	u := ups[len(ups)-1]
	if u.attrs["reason"] != "2 successes" || h.HealthReason != "2 successes" {
		t.Errorf("up line %q, ctl reason %q: want reason \"2 successes\"", u.raw, h.HealthReason)
	}
	if took := u.at.Sub(restarted); took < interval-jitter {
		t.Errorf("up %v after the restart, before two checks (one interval, %v) could pass", took, interval)
	} else {
		t.Logf("up %v after the restart (rise 2)", took.Round(time.Millisecond))
	}
	if s := lan.Client.EchoGet(t, vipURL(lan.VIP), 10, 1); s.OK != 10 || s.Backends["be2"] != 5 {
		t.Errorf("after the recovery: %+v", s)
	}
}

// TestControlHealthTypes: each check type tells a healthy backend from a
// failing one. One backend host serves one port per service, so every
// service's backend has a check of its own.
func TestControlHealthTypes(t *testing.T) {
	lan := lanWithVIP(t, 1)
	be, ip := lan.Backends[0], lan.BackendIPs[0]
	procs := map[uint16]*Proc{}
	for port := uint16(8080); port <= 8084; port++ {
		procs[port] = serveOn(t, be, netip.AddrPortFrom(ip, port))
	}
	// Short checks keep the test short; fall 2 and rise 2 still need two
	// results in a row.
	b := startConfigured(t, lan.LB, fmt.Sprintf(`
health: { interval: 500ms, timeout: 300ms, rise: 2, fall: 2, passive: 0 }
services:
  - name: tcp
    vip: %[1]s
    port: 80
    health: { type: tcp }
    backends: [%[2]s:8080]
  - name: http-nope
    vip: %[1]s
    port: 81
    health: { type: http, path: /nope }
    backends: [%[2]s:8081]
  - name: http-ok
    vip: %[1]s
    port: 82
    health: { type: http, path: /health }
    backends: [%[2]s:8082]
  - name: send-expect-ok
    vip: %[1]s
    port: 83
    # Go's HTTP server answers an HTTP/1.0 request with an HTTP/1.0 status line.
    health: { type: send-expect, send: "GET /health HTTP/1.0\r\n\r\n", expect: "HTTP/1.0 200" }
    backends: [%[2]s:8083]
  - name: send-expect-nope
    vip: %[1]s
    port: 84
    health: { type: send-expect, send: "GET /health HTTP/1.0\r\n\r\n", expect: "NOPE" }
    backends: [%[2]s:8084]
`, lan.VIP, ip))

	const within = 5 * time.Second // the first check runs before forwarding starts; 5 s is slack
	for _, c := range []struct {
		service string
		port    uint16
		health  string
		reason  string // part of the reason of a down backend
	}{
		{"tcp", 8080, api.HealthUp, ""},
		{"http-nope", 8081, api.HealthDown, "status 404, want 200"},
		{"http-ok", 8082, api.HealthUp, ""},
		{"send-expect-ok", 8083, api.HealthUp, ""},
		{"send-expect-nope", 8084, api.HealthDown, `want "NOPE"`},
	} {
		h := b.waitHealth(t, c.service, netip.AddrPortFrom(ip, c.port).String(), c.health, within)
		if !strings.Contains(h.HealthReason, c.reason) {
			t.Errorf("%s: health %s, reason %q; want it to contain %q", c.service, h.Health, h.HealthReason, c.reason)
		}
	}
	// What the clients see: an up backend answers, a service whose only
	// backend is down gets a RST from l4raw at once.
	for port, want := range map[uint16]string{80: "ok", 81: "refused", 82: "ok", 83: "ok", 84: "refused"} {
		if r := lan.Client.EchoConnect(t, netip.AddrPortFrom(lan.VIP, port), 2*time.Second); r.Result != want {
			t.Errorf("connect to VIP port %d: %s (%s), want %s", port, r.Result, r.Error, want)
		}
	}

	// tcp: the server goes away, the check fails.
	procs[8080].Stop()
	h := b.waitHealth(t, "tcp", netip.AddrPortFrom(ip, 8080).String(), api.HealthDown, 2*500*time.Millisecond+3*time.Second)
	if !strings.Contains(h.HealthReason, "connection refused") {
		t.Errorf("tcp: reason %q, want connection refused", h.HealthReason)
	}
	noKernelRSTs(t, lan.LB)
}

// TestControlMetrics: after N requests and one download of M bytes the
// Prometheus metrics count exactly N+1 connections and at least M bytes out.
func TestControlMetrics(t *testing.T) {
	lan := lanWithVIP(t, 2)
	lan.StartBackends(t, 8080)
	bes := lan.BackendAddrs(8080)
	b := startConfigured(t, lan.LB, fmt.Sprintf(`
services:
  - name: web
    vip: %s
    port: 80
    backends: [%s, %s]
`, lan.VIP, bes[0], bes[1]))
	retrans := func() (n uint64) {
		for _, be := range lan.Backends {
			n += be.Counter(t, "TcpRetransSegs")
		}
		return n
	}
	retrans0 := retrans()

	const n, size = 20, 16 << 20
	if s := lan.Client.EchoGet(t, vipURL(lan.VIP), n, 1); s.OK != n {
		t.Fatalf("requests: %+v", s)
	}
	if r := lan.Client.EchoDownload(t, vipURL(lan.VIP), size); !r.OK || r.Bytes != size {
		t.Fatalf("download: %+v", r)
	}
	m := b.metrics(t)
	resent := retrans() - retrans0

	if got := m.sum("l4raw_connections_total", nil); got != n+1 {
		t.Errorf("l4raw_connections_total %v, want %d", got, n+1)
	}
	web := map[string]string{"service": "web"}
	if got := m.sum("l4raw_backend_connections_total", web); got != n+1 {
		t.Errorf("l4raw_backend_connections_total sums to %v, want %d", got, n+1)
	}
	out := map[string]string{"service": "web", "direction": "out"}
	bytesOut, pktsOut := m.sum("l4raw_backend_bytes_total", out), m.sum("l4raw_backend_packets_total", out)
	// The counters hold whole IP packets from the backends: the download's
	// body, the answers' heads and bodies (under 512 bytes each for l4echo:
	// a status line, five short headers and a backend name), at most 120
	// bytes of IP and TCP header per packet (60 each at most, RFC 791 and
	// RFC 9293), and segments the backends sent again (at most 64 KiB
	// each, the largest GSO frame).
	bound := float64(size) + (n+1)*512 + pktsOut*120 + float64(resent)*65536
	if bytesOut < size || bytesOut > bound {
		t.Errorf("l4raw_backend_bytes_total{direction=out} %v over %v packets (%d resent): want %d..%.0f", bytesOut, pktsOut, resent, size, bound)
	}
	t.Logf("bytes out %.0f for a %d-byte download and %d requests: %.0f bytes over, %.0f packets", bytesOut, size, n, bytesOut-size, pktsOut)
	if got := m.sum("l4raw_conntrack_entries", nil); got <= 0 {
		t.Errorf("l4raw_conntrack_entries %v, want the connections lingering after their close", got)
	}
	drops := m.all("l4raw_drops_total", nil)
	if len(drops) == 0 {
		t.Errorf("no l4raw_drops_total samples")
	}
	for _, d := range drops {
		if d.value != 0 {
			t.Errorf("l4raw_drops_total{reason=%q} %v, want 0", d.labels["reason"], d.value)
		}
	}
	noKernelRSTs(t, lan.LB)
}

// TestControlWeightedSchedulers: wrr is exact per cycle; maglev spreads by
// weight within binomial noise.
func TestControlWeightedSchedulers(t *testing.T) {
	lan := lanWithVIP(t, 3)
	lan.StartBackends(t, 8080)
	lan.StartBackends(t, 8081)
	ip := lan.BackendIPs
	// Separate backend ports per service, so each service's backends are
	// endpoints of their own.
	b := startConfigured(t, lan.LB, fmt.Sprintf(`
services:
  - name: wrr
    vip: %[1]s
    port: 80
    scheduler: wrr
    backends:
      - { address: "%[2]s:8080", weight: 1 }
      - { address: "%[3]s:8080", weight: 2 }
      - { address: "%[4]s:8080", weight: 3 }
  - name: maglev
    vip: %[1]s
    port: 81
    scheduler: maglev
    backends:
      - { address: "%[2]s:8081", weight: 1 }
      - { address: "%[3]s:8081", weight: 1 }
      - { address: "%[4]s:8081", weight: 2 }
`, lan.VIP, ip[0], ip[1], ip[2]))

	// wrr: a cycle is 6 picks, 1, 2 and 3 of them per backend; 60
	// sequential connections are 10 cycles whatever the phase.
	s := lan.Client.EchoGet(t, vipURL(lan.VIP), 60, 1)
	for i, want := range []int{10, 20, 30} {
		if got := s.Backends[fmt.Sprintf("be%d", i+1)]; s.OK != 60 || got != want {
			t.Errorf("wrr 1:2:3: be%d answered %d of %d ok, want %d (spread %v)", i+1, got, s.OK, want, s.Backends)
		}
	}

	// maglev: each connection (its client port varies) hashes to a backend
	// with probability weight/4, independently, so a count is binomial.
	// Four standard deviations (8.7 for p = 1/4, 10 for p = 1/2) leave a
	// false alarm about once in 16,000 runs per backend.
	const conns = 400
	s = lan.Client.EchoGet(t, vipPortURL(lan.VIP, 81), conns, 4)
	if s.OK != conns {
		t.Fatalf("maglev: %d of %d ok: %+v", s.OK, conns, s)
	}
	// The connections linger in the table (TIME_WAIT, 10 s): each came
	// from a client port of its own.
	ports := map[string]bool{}
	var p api.FlowPage
	b.ctlJSON(t, &p, "flows", "--service", "maglev", "--limit", "1000")
	for _, f := range p.Flows {
		ports[f.Client] = true
	}
	if len(ports) != conns {
		t.Errorf("maglev: %d distinct client addresses in %d flows, want %d", len(ports), len(p.Flows), conns)
	}
	for i, p := range []float64{0.25, 0.25, 0.5} {
		want := p * conns
		tol := binomialBound(conns, p, 4)
		got := float64(s.Backends[fmt.Sprintf("be%d", i+1)])
		if got < want-tol || got > want+tol {
			t.Errorf("maglev 1:1:2: be%d answered %.0f of %d, want %.0f ± %.0f (spread %v)", i+1, got, conns, want, tol, s.Backends)
		}
	}
	t.Logf("maglev 1:1:2 over %d connections: %v", conns, s.Backends)
	noKernelRSTs(t, lan.LB)
}

// TestControlPassiveHealth: a backend whose service port is closed but whose
// check port is open passes its active checks; the refusals its clients get
// take it down through the passive check.
func TestControlPassiveHealth(t *testing.T) {
	lan := lanWithVIP(t, 2)
	// be1 serves 8080 and the check port 9000; be2 only 9000.
	serveOn(t, lan.Backends[0], netip.AddrPortFrom(lan.BackendIPs[0], 8080))
	for i := range lan.Backends {
		serveOn(t, lan.Backends[i], netip.AddrPortFrom(lan.BackendIPs[i], 9000))
	}
	bes := lan.BackendAddrs(8080)
	// fall 2 and passive 2: two seconds with two refusals each take a
	// backend down (an active success in between restarts the count, hence
	// an interval of 2 s: two passive seconds fit between two checks).
	// rise 10 keeps it down for 20 s after that, longer than the rest of
	// the test, so the active checks do not bring it back meanwhile.
	b := startConfigured(t, lan.LB, fmt.Sprintf(`
health: { port: 9000, interval: 2s, timeout: 1s, rise: 10, fall: 2, passive: 2 }
services:
  - name: web
    vip: %s
    port: 80
    backends: [%s, %s]
`, lan.VIP, bes[0], bes[1]))
	bad := bes[1].String()
	// A whole interval with no traffic: at least one regular check passed.
	time.Sleep(2*time.Second + 500*time.Millisecond)
	if h := b.backend(t, "web", bad); h.Health != api.HealthUp {
		t.Fatalf("be2 with its check port open: health %s (%s), want up", h.Health, h.HealthReason)
	}

	start := time.Now()
	const within = 15 * time.Second // fall 2 passive seconds need about 2-3 s; the rest is slack
	refused, ok := 0, 0
	for i := 0; ; i++ {
		s := lan.Client.EchoGet(t, vipURL(lan.VIP), 6, 1, "--timeout", "2s")
		refused += s.Errors.Refused
		ok += s.OK
		if s.OK+s.Errors.Refused != 6 || s.Backends["be2"] != 0 {
			t.Fatalf("requests while be2 refuses: %+v", s)
		}
		if len(logLinesFor(b.Output(), "backend down", "addr", netip.AddrPortFrom(lan.BackendIPs[1], 9000).String())) > 0 {
			break
		}
		if time.Since(start) > within || i > 1000 {
			t.Fatalf("be2 not down %v after its clients started getting refusals (%d refused, %d ok); backend %+v", within, refused, ok, b.backend(t, "web", bad))
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(start)
	if refused == 0 {
		t.Errorf("no client was refused by be2")
	}
	downs := logLinesFor(b.Output(), "backend down", "addr", netip.AddrPortFrom(lan.BackendIPs[1], 9000).String())
	d := downs[0]
	if !strings.Contains(d.attrs["reason"], "passive") || d.attrs["failures"] != "2" {
		t.Errorf("down line %q: want a passive reason and failures=2", d.raw)
	}
	// Two passive seconds: the first refusal is after start, the second
	// failed second ends a second after the first. 100 ms for tick jitter.
	if d.at.Sub(start) < time.Second-100*time.Millisecond {
		t.Errorf("down %v after the first refusals, before two passive seconds passed", d.at.Sub(start))
	}
	t.Logf("be2 down %.1f s after its clients started getting refusals (%d refused, %d ok)", took.Seconds(), refused, ok)
	if h := b.backend(t, "web", bad); h.Health != api.HealthDown || !strings.Contains(h.HealthReason, "passive") {
		t.Errorf("ctl backends: be2 health %s (%s), want down for a passive reason", h.Health, h.HealthReason)
	}
	if s := lan.Client.EchoGet(t, vipURL(lan.VIP), 20, 1); s.OK != 20 || s.Backends["be1"] != 20 {
		t.Errorf("after be2 went down: %d of 20 ok, spread %v, errors %+v; want all on be1", s.OK, s.Backends, s.Errors)
	}
	noKernelRSTs(t, lan.LB)
}
