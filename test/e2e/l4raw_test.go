//go:build e2e

package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestLANRoundRobin: one LAN, full NAT, 300 sequential connections land
// exactly 100 on each of 3 backends, all from the balancer's address.
func TestLANRoundRobin(t *testing.T) {
	lan, _, b := lanBalancer(t, 3)
	s := lan.Client.EchoGet(t, vipURL(lan.VIP), 300, 1)
	if s.OK != 300 {
		t.Fatalf("%d of 300 ok: %+v", s.OK, s.Errors)
	}
	for i := 1; i <= 3; i++ {
		if got := s.Backends[fmt.Sprintf("be%d", i)]; got != 100 {
			t.Errorf("be%d answered %d, want 100 (spread %v)", i, got, s.Backends)
		}
	}
	if len(s.RemoteIPs) != 1 || s.RemoteIPs[lan.LBIP.String()] != 300 {
		t.Errorf("backends saw %v, want only the SNAT address %s (full NAT)", s.RemoteIPs, lan.LBIP)
	}
	c := b.counters(t)
	if c["conns_new"] != 300 || c["drop_no_flow"] != 0 || c["drop_no_flow_reply"] != 0 {
		t.Errorf("counters: conns_new %d drop_no_flow %d drop_no_flow_reply %d", c["conns_new"], c["drop_no_flow"], c["drop_no_flow_reply"])
	}
	noKernelRSTs(t, lan.LB)
	if code, _ := b.stop(t); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

// TestBulkTransfer: 256 MiB each way through the VIP with the veths' default
// offloads (TSO/GSO and checksum offload on), verified byte for byte.
func TestBulkTransfer(t *testing.T) {
	lan, _, b := lanBalancer(t, 3)
	const size = 256 << 20
	down := lan.Client.EchoDownload(t, vipURL(lan.VIP), size)
	if !down.OK || down.Bytes != size {
		t.Fatalf("download: %+v", down)
	}
	up := lan.Client.EchoUpload(t, vipURL(lan.VIP), size)
	if !up.OK || up.Bytes != size {
		t.Fatalf("upload: %+v", up)
	}
	t.Logf("256 MiB through l4raw: download %.2f Gbit/s, upload %.2f Gbit/s", down.Gbps, up.Gbps)
	c := b.counters(t)
	if c["socket_truncated"] != 0 || c["socket_tx_errors"] != 0 {
		t.Errorf("socket_truncated %d socket_tx_errors %d", c["socket_truncated"], c["socket_tx_errors"])
	}
	t.Logf("frames: rx %d (%d bytes), tx %d; kernel socket drops %d", c["rx_frames"], c["rx_bytes"], c["tx_frames"], c["socket_kernel_drops"])
	noKernelRSTs(t, lan.LB)
}

// TestClosedBackendPort: a backend whose service port is closed (its health
// check port is open, so it counts as up) answers the forwarded SYN with a
// RST; l4raw relays it, the client gets "connection refused" at once, and
// l4raw goes on forwarding to the other backend.
func TestClosedBackendPort(t *testing.T) {
	lan := NewLAN(t, 2)
	lan.LB.Run(t, "ip", "addr", "add", lan.VIP.String()+"/32", "dev", lan.Ifname)
	bin := L4echo(t)
	// be1 serves 8080 and the health-check port 9000; be2 only 9000.
	for i, ports := range [][]int{{8080, 9000}, {9000}} {
		for _, port := range ports {
			p := lan.Backends[i].Start(t, bin, "serve", "--listen", fmt.Sprintf("%s:%d", lan.BackendIPs[i], port), "--name", lan.Backends[i].Role)
			p.WaitFor(t, "msg=serving", 10*time.Second)
		}
	}
	b := startL4raw(t, lan.LB, "--vip", netip.AddrPortFrom(lan.VIP, 80).String(),
		"--backend", netip.AddrPortFrom(lan.BackendIPs[0], 8080).String(),
		"--backend", netip.AddrPortFrom(lan.BackendIPs[1], 8080).String(), "--health-port", "9000")
	refused, ok := 0, 0
	for i := 0; i < 10; i++ {
		r := lan.Client.EchoConnect(t, netip.AddrPortFrom(lan.VIP, 80), 3*time.Second)
		switch r.Result {
		case "refused":
			refused++
			if r.MS > 500 {
				t.Errorf("connection refused after %.0f ms, want it at once", r.MS)
			}
		case "ok":
			ok++
		default:
			t.Errorf("connect %d: %s (%s)", i, r.Result, r.Error)
		}
	}
	if refused != 5 || ok != 5 {
		t.Errorf("%d refused, %d ok; want 5 and 5 (round robin over an open and a closed port)", refused, ok)
	}
	if !b.Running() {
		t.Fatal("l4raw stopped")
	}
	if s := lan.Client.EchoGet(t, vipURL(lan.VIP), 4, 1); s.OK != 2 || s.Backends["be1"] != 2 {
		t.Errorf("after the refusals: %+v", s)
	}
	c := b.counters(t)
	if c["rst_sent"] != 0 {
		t.Errorf("l4raw sent %d RSTs itself; the refusals must be the backend's, relayed", c["rst_sent"])
	}
	noKernelRSTs(t, lan.LB)
}

// TestRetransmittedSYN: the backend's first SYN-ACK is dropped, so the
// client retransmits its SYN; l4raw maps it to the same entry and backend,
// and the connection works.
func TestRetransmittedSYN(t *testing.T) {
	lan, _, b := lanBalancer(t, 1)
	be := lan.Backends[0]
	// Drop the first SYN-ACK toward the NAT ports (health checks use other ports); count SYNs that arrive.
	be.Run(t, "iptables", "-A", "OUTPUT", "-p", "tcp", "--tcp-flags", "SYN,ACK", "SYN,ACK", "--dport", "61000:65535",
		"-m", "statistic", "--mode", "nth", "--every", "1000", "--packet", "0", "-j", "DROP")
	be.Run(t, "iptables", "-A", "INPUT", "-p", "tcp", "--syn", "--dport", "8080", "--sport", "61000:65535")
	before := b.counters(t)["conns_new"]
	s := lan.Client.EchoGet(t, vipURL(lan.VIP), 1, 1, "--timeout", "10s")
	if s.OK != 1 {
		t.Fatalf("request failed: %+v", s)
	}
	out := be.Run(t, "iptables", "-L", "-n", "-v", "-x")
	var dropped, syns int
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) > 2 && f[2] == "DROP" {
			fmt.Sscan(f[0], &dropped)
		}
		if len(f) > 2 && strings.Contains(l, "dpt:8080") {
			fmt.Sscan(f[0], &syns)
		}
	}
	if dropped != 1 || syns < 2 {
		t.Fatalf("dropped %d SYN-ACKs and saw %d SYNs at the backend, want 1 and at least 2:\n%s", dropped, syns, out)
	}
	c := b.counters(t)
	if got := c["conns_new"] - before; got != 1 {
		t.Errorf("conns_new rose by %d, want 1: the retransmitted SYN must map to the same entry", got)
	}
	if c["conns_in_table"] != 1 {
		t.Errorf("conns_in_table %d, want 1", c["conns_in_table"])
	}
	noKernelRSTs(t, lan.LB)
}

// TestBackendKilled: a killed backend is avoided within fall x interval;
// with every backend down, SYNs get a RST from l4raw at once and l4raw
// stays idle.
func TestBackendKilled(t *testing.T) {
	lan, procs, b := lanBalancer(t, 3)
	if s := lan.Client.EchoGet(t, vipURL(lan.VIP), 30, 1); s.OK != 30 {
		t.Fatalf("before: %+v", s)
	}
	procs[1].Stop()
	killed := time.Now()
	const within = 3*2*time.Second + 2*time.Second // fall x interval, plus one interval of phase and slack
	var clean time.Duration
	for time.Since(killed) < within+5*time.Second {
		s := lan.Client.EchoGet(t, vipURL(lan.VIP), 6, 1)
		if s.OK == 6 && s.Backends["be2"] == 0 {
			clean = time.Since(killed)
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if clean == 0 || clean > within {
		t.Fatalf("connections still reached the dead backend %v after it was killed (limit %v)", time.Since(killed), within)
	}
	t.Logf("dead backend avoided %.1f s after it was killed", clean.Seconds())
	s := lan.Client.EchoGet(t, vipURL(lan.VIP), 30, 1)
	if s.OK != 30 || s.Backends["be1"] != 15 || s.Backends["be3"] != 15 {
		t.Errorf("after: %+v", s)
	}

	procs[0].Stop()
	procs[2].Stop()
	deadline := time.Now().Add(within + 5*time.Second)
	for {
		r := lan.Client.EchoConnect(t, netip.AddrPortFrom(lan.VIP, 80), 2*time.Second)
		if r.Result == "refused" && strings.Contains(b.Output(), "backend down") && strings.Count(b.Output(), "down") >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not all backends down in time: last %+v", r)
		}
		time.Sleep(500 * time.Millisecond)
	}
	before := b.counters(t)
	cpu0 := b.CPUTime(t)
	start := time.Now()
	for i := 0; i < 10; i++ {
		r := lan.Client.EchoConnect(t, netip.AddrPortFrom(lan.VIP, 80), 2*time.Second)
		if r.Result != "refused" || r.MS > 200 {
			t.Errorf("with no backend: %s after %.1f ms, want refused at once", r.Result, r.MS)
		}
		time.Sleep(450 * time.Millisecond)
	}
	if d := 5*time.Second - time.Since(start); d > 0 {
		time.Sleep(d)
	}
	cpu := b.CPUTime(t) - cpu0
	t.Logf("l4raw CPU time over %.1f s with every backend down: %v", time.Since(start).Seconds(), cpu)
	if cpu > 500*time.Millisecond {
		t.Errorf("l4raw used %v of CPU in 5 s with every backend down: it must be idle", cpu)
	}
	after := b.counters(t)
	if got := after["rst_sent"] - before["rst_sent"]; got != 10 {
		t.Errorf("rst_sent rose by %d, want 10", got)
	}
	noKernelRSTs(t, lan.LB)
}

// TestRouterDNAT: the two-armed router layout in DNAT mode; backends see the
// client's own address.
func TestRouterDNAT(t *testing.T) {
	r := NewRouter(t, 3)
	r.LB.Run(t, "ip", "addr", "add", r.VIP.String()+"/32", "dev", r.ClientIfname)
	r.StartBackends(t, 8080)
	args := []string{"--mode", "dnat", "--vip", netip.AddrPortFrom(r.VIP, 80).String()}
	for _, ip := range r.BackendIPs {
		args = append(args, "--backend", netip.AddrPortFrom(ip, 8080).String())
	}
	b := startL4raw(t, r.LB, args...)
	s := r.Client.EchoGet(t, vipURL(r.VIP), 30, 1)
	if s.OK != 30 {
		t.Fatalf("%+v", s)
	}
	if len(s.RemoteIPs) != 1 || s.RemoteIPs[r.ClientIP.String()] != 30 {
		t.Errorf("backends saw %v, want the client's address %s", s.RemoteIPs, r.ClientIP)
	}
	for i := 1; i <= 3; i++ {
		if got := s.Backends[fmt.Sprintf("be%d", i)]; got != 10 {
			t.Errorf("be%d answered %d, want 10", i, got)
		}
	}
	down := r.Client.EchoDownload(t, vipURL(r.VIP), 64<<20)
	up := r.Client.EchoUpload(t, vipURL(r.VIP), 64<<20)
	if !down.OK || !up.OK {
		t.Fatalf("transfer: %+v %+v", down, up)
	}
	t.Logf("DNAT through the router: download %.2f Gbit/s, upload %.2f Gbit/s", down.Gbps, up.Gbps)
	if c := b.counters(t); c["drop_no_flow_reply"] != 0 {
		t.Errorf("drop_no_flow_reply %d (health-check replies must stay in the kernel)", c["drop_no_flow_reply"])
	}
	noKernelRSTs(t, r.LB)
}

// TestGuardLifecycle: the host's own connections work while l4raw runs; the
// guard table goes on SIGTERM; after SIGKILL the next start removes it.
func TestGuardLifecycle(t *testing.T) {
	lan, _, b := lanBalancer(t, 2)
	table := func() bool {
		out, _ := lan.LB.RunStatus(t, "nft", "list", "tables")
		return strings.Contains(out, "inet l4raw")
	}
	if !table() {
		t.Fatal("no guard table while l4raw runs")
	}
	// The balancer host's own outgoing connections (kernel ephemeral ports, outside the NAT range).
	if s := lan.LB.EchoGet(t, URL(netip.AddrPortFrom(lan.BackendIPs[0], 8080), "/"), 50, 4); s.OK != 50 {
		t.Errorf("host's own connections while l4raw runs: %+v", s)
	}
	if code, _ := b.stop(t); code != 0 {
		t.Errorf("exit code %d", code)
	}
	if table() {
		t.Fatal("guard table left after SIGTERM")
	}

	args := []string{"--vip", netip.AddrPortFrom(lan.VIP, 80).String(), "--backend", netip.AddrPortFrom(lan.BackendIPs[0], 8080).String()}
	b2 := startL4raw(t, lan.LB, args...)
	b2.Kill()
	if !table() {
		t.Fatal("expected the table to survive SIGKILL")
	}
	b3 := startL4raw(t, lan.LB, args...)
	if !strings.Contains(b3.Output(), "removing a guard table left by an earlier l4raw") {
		t.Errorf("the stale table was not reported")
	}
	if s := lan.Client.EchoGet(t, vipURL(lan.VIP), 5, 1); s.OK != 5 {
		t.Errorf("after restart: %+v", s)
	}
	b3.stop(t)
	if table() {
		t.Fatal("guard table left after the restart's SIGTERM")
	}
	noKernelRSTs(t, lan.LB)
}

// TestNotLocalVIP: a VIP that is not a local address is refused with the
// command that fixes it, exit code 2: with --vip-arp off, and for an
// address outside every connected subnet (which l4raw cannot claim).
func TestNotLocalVIP(t *testing.T) {
	lan := NewLAN(t, 1)
	for _, c := range []struct {
		vip  netip.Addr
		args []string
	}{
		{lan.VIP, []string{"--vip-arp", "off"}},
		{netip.MustParseAddr("198.18.99.100"), nil},
	} {
		args := append([]string{L4raw(t), "--vip", netip.AddrPortFrom(c.vip, 80).String(), "--backend", lan.BackendIPs[0].String() + ":8080"}, c.args...)
		p := lan.LB.Start(t, args...)
		code, err := p.Wait(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		msg := strings.TrimSpace(p.Output())
		want := fmt.Sprintf("ip addr add %s/32 dev %s", c.vip, lan.Ifname)
		if code != 2 || !strings.Contains(msg, want) || strings.Count(msg, "\n") != 0 {
			t.Errorf("%v: exit %d, output %q; want exit 2 and one line with %q", c.args, code, msg, want)
		}
	}
}
