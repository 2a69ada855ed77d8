//go:build e2e

package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// reloadConfig is the service of the reload tests: backends without a port
// serve every service port on the same port; wrr with weights w1 and w2.
func reloadConfig(lan *LAN, ports string, w1, w2 int) string {
	return fmt.Sprintf(`
health: { interval: 1s, timeout: 500ms }
services:
  - name: web
    vip: %s
    ports: [%s]
    scheduler: wrr
    backends:
      - { address: %s, weight: %d }
      - { address: %s, weight: %d }
`, lan.VIP, ports, lan.BackendIPs[0], w1, lan.BackendIPs[1], w2)
}

// TestControlReloadDuringTransfer: a reload (SIGHUP) that adds a service
// port and changes weights keeps a running transfer; the new port answers
// and the new weights apply.
func TestControlReloadDuringTransfer(t *testing.T) {
	lan := lanWithVIP(t, 2)
	lan.StartBackends(t, 80)
	lan.StartBackends(t, 81)
	b := startConfigured(t, lan.LB, reloadConfig(lan, "80", 1, 1))
	if r := lan.Client.EchoConnect(t, netip.AddrPortFrom(lan.VIP, 81), time.Second); r.Result == "ok" {
		t.Fatalf("port 81 answers before it is configured: %+v", r)
	}
	// The balancer's kernel refused that connection itself (port 81 was
	// not l4raw's yet); from here on it must send no RST.
	rsts := lan.LB.TCPOutRsts(t)

	// 64 MiB at 8 MiB/s: about 8 s, while the reload and 60 requests take
	// about one.
	const size, rate = 64 << 20, 8 << 20
	dl := startDownload(t, lan.Client, vipURL(lan.VIP), size, rate)
	fl := b.clientFlow(t, lan.ClientIP, 5*time.Second)

	b.rewrite(t, reloadConfig(lan, "80, 81", 1, 3))
	if got := b.sighup(t); got != "reloaded" {
		t.Fatalf("SIGHUP with a good file: %s", got)
	}
	if !dl.Running() {
		t.Errorf("the download ended before the reload was done")
	}
	// The new port is served by the backends that are already up (their
	// check, on port 80, is unchanged); 3 s lets a check interval pass in
	// case the daemon waits for one.
	deadline := time.Now().Add(3 * time.Second)
	var s GetSummary
	for i := 0; i < 30; i++ {
		if s = lan.Client.EchoGet(t, vipPortURL(lan.VIP, 81), 20, 1); s.OK == 20 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if s.OK != 20 {
		t.Errorf("new port 81 after the reload: %d of 20 ok, errors %+v; backends %+v", s.OK, s.Errors, b.backends(t, "web"))
	}
	// wrr with the new weights 1:3 is exact per cycle of 4: 40 sequential
	// connections are 10 and 30.
	if s := lan.Client.EchoGet(t, vipURL(lan.VIP), 40, 1); s.OK != 40 || s.Backends["be1"] != 10 || s.Backends["be2"] != 30 {
		t.Errorf("port 80 after the reload to weights 1:3: %d ok, spread %v; want 10 and 30", s.OK, s.Backends)
	}
	if got := b.clientFlow(t, lan.ClientIP, time.Second); got.Backend != fl.Backend {
		t.Errorf("the download's flow moved from %s to %s", fl.Backend, got.Backend)
	}
	if !dl.Running() {
		t.Errorf("the download ended before the checks after the reload were done")
	}
	r := transferResult(t, dl, 60*time.Second) // 8 s nominal
	if !r.OK || r.Bytes != size {
		t.Fatalf("download across the reload: %+v", r)
	}
	if n := lan.LB.TCPOutRsts(t) - rsts; n != 0 {
		t.Errorf("the balancer's kernel sent %d TCP RSTs after port 81 was configured, want 0", n)
	}
}

// TestControlReloadRefused: a broken file is refused by "ctl reload" (exit
// 1, one line) and by SIGHUP, the log says the running configuration
// stays, and it does.
func TestControlReloadRefused(t *testing.T) {
	lan := lanWithVIP(t, 2)
	lan.StartBackends(t, 80)
	b := startConfigured(t, lan.LB, reloadConfig(lan, "80", 1, 3))
	const stays = "reload refused; the running configuration stays"

	b.rewrite(t, strings.Replace(reloadConfig(lan, "80", 1, 3), lan.BackendIPs[1].String(), "198.18.0.300", 1))
	stdout, stderr, code := b.ctl(t, "reload")
	msg := strings.TrimSpace(stderr)
	t.Logf("ctl reload of a broken file: exit %d: %s", code, msg)
	if code != 1 || strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "198.18.0.300") || stdout != "" {
		t.Errorf("ctl reload of a broken file: exit %d, stdout %q, stderr %q; want exit 1 and one line naming the bad value", code, stdout, msg)
	}
	// The daemon has answered, so a log line about it is written already;
	// 2 s is slack for the pipe.
	deadline := time.Now().Add(2 * time.Second)
	for len(logLines(b.Output(), stays)) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if len(logLines(b.Output(), stays)) == 0 {
		t.Errorf("after ctl reload of a broken file, no log line says %q", stays)
	}
	if got := b.sighup(t); got != "refused" {
		t.Errorf("SIGHUP with a broken file: %s, want refused", got)
	}
	// Still the running configuration: wrr 1:3, exact per cycle of 4.
	if s := lan.Client.EchoGet(t, vipURL(lan.VIP), 8, 1); s.OK != 8 || s.Backends["be1"] != 2 || s.Backends["be2"] != 6 {
		t.Errorf("after the refused reloads: %d ok, spread %v; want 2 and 6 (weights 1:3)", s.OK, s.Backends)
	}
	noKernelRSTs(t, lan.LB)
}
