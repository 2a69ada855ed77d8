//go:build e2e

package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

const echoPort = 8080

func TestLAN(t *testing.T) {
	L4echo(t) // build outside the timing
	start := time.Now()
	lan := NewLAN(t, 3)
	t.Logf("NewLAN(3) took %v", time.Since(start))
	procs := lan.StartBackends(t, echoPort)
	t.Logf("NewLAN(3) + StartBackends took %v", time.Since(start))

	for i, ap := range lan.BackendAddrs(echoPort) {
		s := lan.Client.EchoGet(t, URL(ap, "/"), 20, 4)
		name := lan.Backends[i].Role
		if s.OK != 20 || s.Backends[name] != 20 || len(s.Backends) != 1 {
			t.Errorf("get %s: %+v", ap, s)
		}
		if s.RemoteIPs[lan.ClientIP.String()] != 20 || len(s.RemoteIPs) != 1 || s.DistinctRemotes != 20 {
			t.Errorf("get %s: backend saw %v (%d distinct), want only the client %s", ap, s.RemoteIPs, s.DistinctRemotes, lan.ClientIP)
		}
	}

	be1 := netip.AddrPortFrom(lan.BackendIPs[0], echoPort)
	const size = 256 << 20
	for _, tr := range []Transfer{
		lan.Client.EchoDownload(t, URL(be1, ""), size),
		lan.Client.EchoUpload(t, URL(be1, ""), size),
	} {
		if !tr.OK || tr.Bytes != size {
			t.Errorf("%s: %+v", tr.Op, tr)
		}
		t.Logf("%s %d MiB client→be1 over the bridge: %.2f Gbit/s", tr.Op, size>>20, tr.Gbps)
	}

	cpu := procs[0].CPUTime(t)
	if cpu <= 0 {
		t.Errorf("be1 used no CPU time after serving 256 MiB: %v", cpu)
	}
	if code := procs[0].Stop(); code != 0 {
		t.Errorf("be1 after SIGTERM: exit code %d, want 0 (graceful)", code)
	}
	if out := procs[0].Output(); !strings.Contains(out, "msg=serving") || !strings.Contains(out, "msg=stopped") {
		t.Errorf("be1 output lacks its start or stop line:\n%s", out)
	}
	if c := procs[0].CPUTime(t); c < cpu {
		t.Errorf("CPU time after exit %v < while running %v", c, cpu)
	}
}

func TestNamespaceSettings(t *testing.T) {
	lan := NewLAN(t, 1)
	for _, n := range []*NS{lan.Switch, lan.Client, lan.LB, lan.Backends[0]} {
		if !strings.HasPrefix(n.Name, "l4t") || len(n.Name) > 15 {
			t.Errorf("namespace name %q", n.Name)
		}
		if got := strings.TrimSpace(n.Run(t, "sysctl", "-n", "net.ipv6.conf.all.disable_ipv6")); got != "1" {
			t.Errorf("%s: IPv6 not disabled: %s", n, got)
		}
		if !strings.Contains(n.Run(t, "ip", "link", "show", "lo"), "state UNKNOWN") {
			t.Errorf("%s: lo is not up", n)
		}
	}
	if _, ok := ccAllowed(); ok {
		if got := strings.TrimSpace(lan.Client.Run(t, "sysctl", "-n", "net.ipv4.tcp_congestion_control")); got != congestionControl {
			t.Errorf("client congestion control %s, want %s", got, congestionControl)
		}
	}
	// Offloads stay at the veth defaults: the balancer must handle them.
	for _, n := range []*NS{lan.Client, lan.LB} {
		k := n.Run(t, "ethtool", "-k", lan.Ifname)
		for _, f := range []string{"tcp-segmentation-offload: on", "tx-checksumming: on", "generic-segmentation-offload: on"} {
			if !strings.Contains(k, f) {
				t.Errorf("%s %s: want %q", n, lan.Ifname, f)
			}
		}
	}
	if got := strings.TrimSpace(lan.Switch.Run(t, "sysctl", "-n", "-e", "net.bridge.bridge-nf-call-iptables")); got == "1" {
		t.Errorf("the switch passes bridged frames to iptables")
	}
	// Connections carry cubic even where the namespace default cannot be.
	lan.StartBackends(t, echoPort)
	ss := lan.Backends[0].Run(t, "ss", "-tlni")
	if !strings.Contains(ss, congestionControl) {
		t.Errorf("backend listener is not %s:\n%s", congestionControl, ss)
	}
}

func TestRouter(t *testing.T) {
	start := time.Now()
	r := NewRouter(t, 2)
	t.Logf("NewRouter(2) took %v", time.Since(start))
	r.StartBackends(t, echoPort)
	for i, ap := range r.BackendAddrs(echoPort) {
		s := r.Client.EchoGet(t, URL(ap, "/whoami"), 10, 2)
		if s.OK != 10 || s.Backends[r.Backends[i].Role] != 10 {
			t.Errorf("get %s through the lb's forwarding: %+v", ap, s)
		}
		if s.RemoteIPs[r.ClientIP.String()] != 10 {
			t.Errorf("get %s: backend saw %v, want the client %s (routing, no NAT)", ap, s.RemoteIPs, r.ClientIP)
		}
	}
	if fwd := r.LB.Counter(t, "IpForwDatagrams"); fwd == 0 {
		t.Errorf("lb forwarded nothing (IpForwDatagrams 0)")
	}
	// The lb is a router, not the VIP's owner: nothing answers there yet.
	if c := r.Client.EchoConnect(t, netip.AddrPortFrom(r.VIP, 80), 300*time.Millisecond); c.Result == "ok" {
		t.Errorf("connect to the unconfigured VIP: %+v", c)
	}
}

func TestTCPOutRsts(t *testing.T) {
	lan := NewLAN(t, 1)
	be := lan.Backends[0]
	before := be.TCPOutRsts(t)
	closed := netip.AddrPortFrom(lan.BackendIPs[0], 9) // nothing listens: the kernel answers RST
	start := time.Now()
	c := lan.Client.EchoConnect(t, closed, time.Second)
	if c.Result != "refused" {
		t.Fatalf("connect to a closed port: %+v", c)
	}
	if c.MS > 100 || time.Since(start) > 2*time.Second {
		t.Errorf("refusal took %.2f ms", c.MS)
	}
	after := be.TCPOutRsts(t)
	if after < before+1 {
		t.Errorf("TcpOutRsts %d → %d after a refused connect", before, after)
	}
	if lan.Client.TCPOutRsts(t) != 0 {
		t.Errorf("the client sent RSTs")
	}
	if _, ok := be.Counters(t)["TcpExtTCPTimeouts"]; !ok {
		t.Errorf("no TcpExt counters")
	}
}

func TestProc(t *testing.T) {
	ns := NewNS(t, "proc")
	p := ns.Start(t, "sh", "-c", "echo hello; echo oops >&2; exit 3")
	code, err := p.Wait(5 * time.Second)
	if err != nil || code != 3 {
		t.Fatalf("Wait = %d, %v; want 3", code, err)
	}
	if p.Stdout() != "hello\n" || !strings.Contains(p.Output(), "oops") {
		t.Errorf("stdout %q, output %q", p.Stdout(), p.Output())
	}

	s := ns.Start(t, "sleep", "30")
	if _, err := s.Wait(50 * time.Millisecond); err == nil {
		t.Fatal("Wait returned for a running sleep")
	}
	s.WaitFor(t, "", time.Second)
	if code := s.Stop(); code != -1 {
		t.Errorf("sleep after SIGTERM: exit code %d, want -1 (signal)", code)
	}

	// A process that ignores SIGTERM, with a child: Stop kills the group.
	stubborn := ns.Start(t, "sh", "-c", "trap '' TERM; sleep 30 & echo started; wait")
	stubborn.WaitFor(t, "started", 5*time.Second)
	start := time.Now()
	stubborn.Stop()
	if d := time.Since(start); d < stopTimeout || d > stopTimeout+2*time.Second {
		t.Errorf("Stop of a SIGTERM-ignoring process took %v, want about %v", d, stopTimeout)
	}
	if pids := strings.TrimSpace(runIP(t, "netns", "pids", ns.Name)); pids != "" {
		t.Errorf("processes left in %s after Stop: %s", ns, pids)
	}

	out, code := ns.RunStatus(t, "sh", "-c", "echo out; exit 4")
	if out != "out\n" || code != 4 {
		t.Errorf("RunStatus = %q, %d", out, code)
	}
	if got := ns.Run(t, "echo", "ok"); got != "ok\n" {
		t.Errorf("Run = %q", got)
	}
}

func runIP(t *testing.T, args ...string) string {
	t.Helper()
	out, stderr, code, err := execute(CommandTimeout, "ip", args...)
	if err != nil || code != 0 {
		t.Fatalf("ip %v: %v %s", args, err, stderr)
	}
	return out
}

func TestCPUTime(t *testing.T) {
	before := CPUTime(t, os.Getpid())
	// Spin until the counter moves by two ticks of its 10 ms clock, for at
	// most 2 s (the machine may be busy: CPU time lags wall time).
	x := 1
	var after time.Duration
	for start := time.Now(); time.Since(start) < 2*time.Second; {
		for range 100000 {
			x = x*31 + 7
		}
		if after = CPUTime(t, os.Getpid()); after-before >= 20*time.Millisecond {
			return
		}
	}
	t.Errorf("CPUTime %v → %v after 2 s of spinning (x=%d)", before, after, x)
}

func TestLeftoversRemoved(t *testing.T) {
	// A dead owner: a process that has exited. A reused PID: our own PID with
	// another start time. Both marks are stale; our real mark is not.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	self, err := ownerMark(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	id := newID()
	cases := []struct {
		role, mark string
		removed    bool
	}{
		{"dead", fmt.Sprintf("%s owner=%d start=1", markPrefix, dead.Process.Pid), true},
		{"reused", fmt.Sprintf("%s owner=%d start=1", markPrefix, os.Getpid()), true},
		{"live", self, false},
		{"nomark", "", false},
	}
	for _, c := range cases {
		name := nsPrefix + id + "-" + c.role
		if c.mark == "" {
			runIP(t, "netns", "add", name)
		} else if err := createNS(name, c.mark); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if exists(t, name) {
				deleteNS(name)
			}
		})
	}
	// A leftover with a process inside: removal kills it.
	sleeper := (&NS{Name: nsPrefix + id + "-dead"}).Start(t, "sleep", "30")
	sleeper.WaitFor(t, "", time.Second)

	removed, err := RemoveLeftovers(t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		name := nsPrefix + id + "-" + c.role
		if got := exists(t, name); got == c.removed {
			t.Errorf("%s (mark %q): exists %v after RemoveLeftovers (removed %v)", name, c.mark, got, removed)
		}
	}
	if _, err := sleeper.Wait(5 * time.Second); err != nil {
		t.Errorf("process in a removed leftover still runs: %v", err)
	}
	if sleeper.Running() {
		sleeper.Signal(syscall.SIGKILL)
	}
}

func exists(t *testing.T, name string) bool {
	t.Helper()
	for _, l := range strings.Split(runIP(t, "netns", "list"), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			return true
		}
	}
	return false
}

func TestParseCounters(t *testing.T) {
	in := "Tcp: RtoAlgorithm MaxConn OutRsts\nTcp: 1 -1 7\nTcpExt: TCPTimeouts\nTcpExt: 3\n"
	m, err := parseCounters(in)
	if err != nil {
		t.Fatal(err)
	}
	if m["TcpOutRsts"] != 7 || m["TcpExtTCPTimeouts"] != 3 || m["TcpRtoAlgorithm"] != 1 {
		t.Errorf("counters %v", m)
	}
	if _, ok := m["TcpMaxConn"]; ok {
		t.Errorf("negative MaxConn kept")
	}
	if _, err := parseCounters("Tcp: A B\nUdp: 1 2\n"); err == nil {
		t.Errorf("mismatched pair accepted")
	}
}
