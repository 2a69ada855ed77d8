//go:build e2e

package e2e

import (
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// balancer is a running l4raw.
type balancer struct {
	*Proc
	ns *NS
}

const counterHeader = "== l4raw counters =="

// startL4raw starts l4raw in ns and waits until it forwards.
func startL4raw(t *testing.T, ns *NS, args ...string) *balancer {
	t.Helper()
	p := ns.Start(t, append([]string{L4raw(t)}, args...)...)
	p.WaitFor(t, "msg=forwarding", 20*time.Second)
	return &balancer{Proc: p, ns: ns}
}

var counterLine = regexp.MustCompile(`^([a-z_]+)\s+(\d+)$`)

// parseCounters reads the last counter block in out.
func parseCounterBlock(out string) map[string]uint64 {
	i := strings.LastIndex(out, counterHeader)
	if i < 0 {
		return nil
	}
	m := map[string]uint64{}
	for _, l := range strings.Split(out[i+len(counterHeader):], "\n") {
		if mm := counterLine.FindStringSubmatch(strings.TrimSpace(l)); mm != nil {
			v, _ := strconv.ParseUint(mm[2], 10, 64)
			m[mm[1]] = v
		}
		if strings.HasPrefix(l, "backend ") {
			m["backends_listed"]++
		}
	}
	return m
}

// counters asks the running balancer for its counters (SIGUSR1).
func (b *balancer) counters(t *testing.T) map[string]uint64 {
	t.Helper()
	before := strings.Count(b.Output(), counterHeader)
	if err := b.Signal(syscall.SIGUSR1); err != nil {
		t.Fatalf("SIGUSR1: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		out := b.Output()
		if strings.Count(out, counterHeader) > before && strings.Contains(out[strings.LastIndex(out, counterHeader):], "socket_tx_errors") {
			return parseCounterBlock(out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no counters after SIGUSR1")
	return nil
}

// stop sends SIGTERM and returns the exit code and the final counters.
func (b *balancer) stop(t *testing.T) (int, map[string]uint64) {
	t.Helper()
	code := b.Stop()
	return code, parseCounterBlock(b.Output())
}

// backendLine returns the counter line of one backend from the last block.
func (b *balancer) backendLine(addr netip.AddrPort) string {
	out := b.Output()
	i := strings.LastIndex(out, counterHeader)
	for _, l := range strings.Split(out[i:], "\n") {
		if strings.HasPrefix(l, "backend "+addr.String()+" ") {
			return l
		}
	}
	return ""
}

// lanBalancer builds a LAN with n backends serving on :8080, puts the VIP on
// the balancer and starts l4raw for VIP:80 with extra flags.
func lanBalancer(t *testing.T, n int, extra ...string) (*LAN, []*Proc, *balancer) {
	t.Helper()
	lan := NewLAN(t, n)
	lan.LB.Run(t, "ip", "addr", "add", lan.VIP.String()+"/32", "dev", lan.Ifname)
	procs := lan.StartBackends(t, 8080)
	args := []string{"--vip", netip.AddrPortFrom(lan.VIP, 80).String()}
	for _, ip := range lan.BackendIPs {
		args = append(args, "--backend", netip.AddrPortFrom(ip, 8080).String())
	}
	b := startL4raw(t, lan.LB, append(args, extra...)...)
	return lan, procs, b
}

// noKernelRSTs checks that the balancer's kernel sent no TCP RST: the guard
// kept it out of every forwarded connection.
func noKernelRSTs(t *testing.T, ns *NS) {
	t.Helper()
	if n := ns.TCPOutRsts(t); n != 0 {
		t.Errorf("the balancer's kernel sent %d TCP RSTs (TcpOutRsts), want 0", n)
	}
}

func vipURL(vip netip.Addr) string { return URL(netip.AddrPortFrom(vip, 80), "/") }
