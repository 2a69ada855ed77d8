//go:build e2e

package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestFreeVIP: the VIP is no address of the balancer; l4raw claims it with
// ARP, the client resolves it to the balancer's MAC and its requests spread
// over the backends. A second host already using the address makes l4raw
// exit 2 naming that host's MAC.
func TestFreeVIP(t *testing.T) {
	lan := NewLAN(t, 3)
	lan.StartBackends(t, 8080)
	args := []string{"--vip", netip.AddrPortFrom(lan.VIP, 80).String()}
	for _, ip := range lan.BackendIPs {
		args = append(args, "--backend", netip.AddrPortFrom(ip, 8080).String())
	}
	b := startL4raw(t, lan.LB, args...)
	if out := lan.LB.Run(t, "ip", "-br", "addr", "show"); strings.Contains(out, lan.VIP.String()) {
		t.Fatalf("the VIP is a local address of the balancer: %s", out)
	}
	s := lan.Client.EchoGet(t, vipURL(lan.VIP), 30, 1)
	if s.OK != 30 {
		t.Fatalf("%+v", s)
	}
	for i := 1; i <= 3; i++ {
		if got := s.Backends[fmt.Sprintf("be%d", i)]; got != 10 {
			t.Errorf("be%d answered %d, want 10", i, got)
		}
	}
	neigh := lan.Client.Run(t, "ip", "neigh", "show", lan.VIP.String())
	if want := macFor(lan.LBIP); !strings.Contains(neigh, want) {
		t.Errorf("the client resolves the VIP to %q, want the balancer's MAC %s", strings.TrimSpace(neigh), want)
	}
	if !strings.Contains(b.Output(), "claimed VIP") {
		t.Error("no log line about the claim")
	}
	noKernelRSTs(t, lan.LB)
	b.stop(t)

	// Another host takes the address: l4raw refuses to start, naming it.
	be3 := lan.Backends[2]
	be3.Run(t, "ip", "addr", "add", lan.VIP.String()+"/32", "dev", "eth0")
	p := lan.LB.Start(t, append([]string{L4raw(t)}, args...)...)
	code, err := p.Wait(15 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	msg := strings.TrimSpace(p.Output())
	want := macFor(lan.BackendIPs[2])
	if code != 2 || !strings.Contains(msg, want) || strings.Count(msg, "\n") != 0 {
		t.Errorf("with the VIP in use: exit %d, %q; want exit 2 and one line naming %s", code, msg, want)
	}
}

// TestLocalBackends: backends on the balancer itself (127.0.0.1, the way
// people try this at home), alone and mixed with a remote one: requests
// spread, 64 MiB byte-exact both ways, and the kernel sends no RST.
func TestLocalBackends(t *testing.T) {
	lan := NewLAN(t, 1)
	lan.LB.Run(t, "ip", "addr", "add", lan.VIP.String()+"/32", "dev", lan.Ifname)
	for i := 1; i <= 3; i++ {
		p := lan.LB.Start(t, L4echo(t), "serve", "--listen", fmt.Sprintf("127.0.0.1:808%d", i), "--name", fmt.Sprintf("local%d", i), "--cc", congestionControl)
		p.WaitFor(t, "msg=serving", 10*time.Second)
	}
	lan.StartBackends(t, 8080)
	before := lan.LB.Run(t, "sysctl", "-n", "net.ipv4.conf.lo.accept_local", "net.ipv4.conf.lo.route_localnet")
	args := []string{"--vip", netip.AddrPortFrom(lan.VIP, 80).String(), "--backend", "127.0.0.1:8081", "--backend", "127.0.0.1:8082", "--backend", "127.0.0.1:8083"}
	b := startL4raw(t, lan.LB, args...)
	s := lan.Client.EchoGet(t, vipURL(lan.VIP), 30, 1)
	if s.OK != 30 || s.Backends["local1"] != 10 || s.Backends["local2"] != 10 || s.Backends["local3"] != 10 {
		t.Fatalf("local backends: %+v", s)
	}
	down := lan.Client.EchoDownload(t, vipURL(lan.VIP), 64<<20)
	up := lan.Client.EchoUpload(t, vipURL(lan.VIP), 64<<20)
	if !down.OK || !up.OK {
		t.Fatalf("transfer: %+v %+v", down, up)
	}
	t.Logf("64 MiB to a local backend: download %.2f Gbit/s, upload %.2f Gbit/s", down.Gbps, up.Gbps)
	noKernelRSTs(t, lan.LB)
	b.stop(t)
	if after := lan.LB.Run(t, "sysctl", "-n", "net.ipv4.conf.lo.accept_local", "net.ipv4.conf.lo.route_localnet"); after != before {
		t.Errorf("lo settings after l4raw: %q, before: %q", after, before)
	}

	// Mixed: one remote backend and two local ones.
	args = []string{"--vip", netip.AddrPortFrom(lan.VIP, 80).String(), "--backend", netip.AddrPortFrom(lan.BackendIPs[0], 8080).String(),
		"--backend", "127.0.0.1:8081", "--backend", "127.0.0.1:8082"}
	b = startL4raw(t, lan.LB, args...)
	s = lan.Client.EchoGet(t, vipURL(lan.VIP), 30, 1)
	if s.OK != 30 || s.Backends["be1"] != 10 || s.Backends["local1"] != 10 || s.Backends["local2"] != 10 {
		t.Fatalf("mixed backends: %+v", s)
	}
	noKernelRSTs(t, lan.LB)
	b.stop(t)
}
