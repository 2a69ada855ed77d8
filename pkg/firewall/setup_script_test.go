package firewall

import (
	"errors"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// setupScript is scripts/setup.sh, the iptables counterpart of the Guard.
func setupScript(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("../../scripts/setup.sh")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// runScript runs setup.sh (inside ns unless nil) and returns its exit code,
// stdout+stderr.
func runScript(t *testing.T, ns *netNS, args ...string) (int, string) {
	t.Helper()
	name, argv := setupScript(t), args
	if ns != nil {
		name, argv = "ip", append([]string{"netns", "exec", ns.name, setupScript(t)}, args...)
	}
	out, err := output(name, argv...)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("setup.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	return 0, ""
}

func TestSetupScriptUsage(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatalf("setup.sh needs bash: %v", err)
	}
	tests := []struct {
		args []string
		want string // the one line of stderr contains this
	}{
		{[]string{"frob"}, `unknown action "frob"`},
		{[]string{"add"}, "add needs --vip, --snat-ip or --dnat-backend"},
		{[]string{"add", "--vip", "198.18.0.100"}, `--vip "198.18.0.100": want IP:PORT[,PORT...]`},
		{[]string{"add", "--vip", "198.18.0.100:80,"}, `--vip "198.18.0.100:80,"`},
		{[]string{"add", "--vip", "198.18.0.300:80"}, `bad IPv4 address "198.18.0.300"`},
		{[]string{"add", "--vip", "198.018.0.1:80"}, `bad IPv4 address "198.018.0.1"`},
		{[]string{"add", "--vip", "198.18.0.100:80,0"}, `bad port "0"`},
		{[]string{"add", "--vip=198.18.0.100:65536"}, `bad port "65536"`},
		{[]string{"add", "--vip"}, "--vip needs a value"},
		{[]string{"add", "--snat-ip", "198.18.0.1", "--nat-ports", "65535-61000"}, `--nat-ports "65535-61000": low end must be below high end`},
		{[]string{"add", "--snat-ip", "198.18.0.1", "--nat-ports", "61000"}, `--nat-ports "61000": want LO-HI`},
		{[]string{"add", "--nat-ports", "61000-65535"}, "needs --snat-ip"},
		{[]string{"add", "--snat-ip", "198.18.0.1", "--snat-ip", "198.18.0.2"}, "given twice"},
		{[]string{"add", "--snat-ip", "x"}, `--snat-ip "x": bad IPv4 address`},
		{[]string{"remove", "--dnat-backend", "198.18.1.10"}, `--dnat-backend "198.18.1.10": want IP:PORT`},
		{[]string{"status", "--dnat-backend", "198.18.1.10:http"}, `bad port "http"`},
		{[]string{"status", "--rst"}, `unknown option "--rst"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out := runScript(t, nil, tt.args...)
			if code != 2 {
				t.Fatalf("exit %d, want 2:\n%s", code, out)
			}
			if lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); len(lines) != 1 || !strings.Contains(out, tt.want) {
				t.Fatalf("output %q, want one line containing %q", out, tt.want)
			}
		})
	}
	code, out := runScript(t, nil)
	if code != 2 || !strings.Contains(out, "usage: setup.sh add|remove|status") {
		t.Errorf("no arguments: exit %d, %q", code, out)
	}
	code, out = runScript(t, nil, "--help")
	if code != 0 || !strings.Contains(out, "usage:") {
		t.Errorf("--help: exit %d, %q", code, out)
	}
}

// ourComment matches the script's tags: "l4raw", and "l4raw-reserved" on a NAT
// rule whose port reservation the script made.
var ourComment = regexp.MustCompile(`--comment l4raw(-reserved)? `)

// ourRules are the raw-table lines the script tagged.
func ourRules(t *testing.T, ns *netNS) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(ns.exec(t, "iptables-save", "-t", "raw"), "\n") {
		if ourComment.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

func reservedPorts(t *testing.T, ns *netNS) string {
	t.Helper()
	return strings.TrimSpace(ns.exec(t, "sysctl", "-n", "net.ipv4.ip_local_reserved_ports"))
}

func TestSetupScript(t *testing.T) {
	needRoot(t, "bash", "iptables", "iptables-save", "sysctl", "setpriv")
	ns := newNetNS(t)
	// Someone else's rules and reservations, which the script must leave alone.
	ns.exec(t, "iptables", "-t", "raw", "-A", "PREROUTING", "-d", "198.18.9.9", "-p", "tcp", "--dport", "80", "-j", "DROP")
	ns.exec(t, "iptables", "-t", "raw", "-A", "PREROUTING", "-d", "198.18.9.9", "-p", "tcp", "--dport", "81", "-m", "comment", "--comment", "l4raw-not", "-j", "DROP")
	ns.exec(t, "sysctl", "-q", "-w", "net.ipv4.ip_local_reserved_ports=2000,8080")
	foreign := func() []string {
		var out []string
		for _, l := range strings.Split(ns.exec(t, "iptables-save", "-t", "raw"), "\n") {
			if strings.HasPrefix(l, "-A ") && !ourComment.MatchString(l) {
				out = append(out, l)
			}
		}
		return out
	}
	before := strings.Join(foreign(), "\n")

	args := []string{"--vip", "198.18.0.100:80,443", "--snat-ip", "198.18.0.1", "--nat-ports", "61000-65535",
		"--dnat-backend", "198.18.1.10:8080", "--dnat-backend", "198.18.1.11:8080"}
	want := []string{
		"-A PREROUTING -d 198.18.0.100/32 -p tcp -m tcp --dport 80 -m comment --comment l4raw -j DROP",
		"-A PREROUTING -d 198.18.0.100/32 -p tcp -m tcp --dport 443 -m comment --comment l4raw -j DROP",
		"-A PREROUTING -d 198.18.0.1/32 -p tcp -m tcp --dport 61000:65535 -m comment --comment l4raw-reserved -j DROP",
		"-A PREROUTING -s 198.18.1.10/32 -p tcp -m tcp --sport 8080 -m addrtype ! --dst-type LOCAL -m comment --comment l4raw -j DROP",
		"-A PREROUTING -s 198.18.1.11/32 -p tcp -m tcp --sport 8080 -m addrtype ! --dst-type LOCAL -m comment --comment l4raw -j DROP",
	}

	if code, out := runScript(t, ns, append([]string{"status"}, args...)...); code != 1 {
		t.Fatalf("status before add: exit %d, want 1:\n%s", code, out)
	}
	for range 2 { // add twice: still one rule each
		if code, out := runScript(t, ns, append([]string{"add"}, args...)...); code != 0 {
			t.Fatalf("add: exit %d:\n%s", code, out)
		}
	}
	if got := ourRules(t, ns); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("rules after add twice:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := reservedPorts(t, ns); got != "2000,8080,61000-65535" {
		t.Errorf("reserved ports %q, want 2000,8080,61000-65535", got)
	}
	code, out := runScript(t, ns, append([]string{"status"}, args...)...)
	if code != 0 || !regexp.MustCompile(`\[\d+:\d+\] -A PREROUTING -d 198.18.0.100/32 .*--dport 80 `).MatchString(out) ||
		!strings.Contains(out, "61000-65535") || strings.Contains(out, "missing") {
		t.Errorf("status: exit %d:\n%s", code, out)
	}
	if code, out := runScript(t, ns, "status", "--vip", "198.18.0.100:8443"); code != 1 || !strings.Contains(out, "missing: -A PREROUTING -d 198.18.0.100 -p tcp --dport 8443") {
		t.Errorf("status of a rule never added: exit %d:\n%s", code, out)
	}

	// remove with the same arguments: our rules and our reservation go, the rest stays.
	if code, out := runScript(t, ns, append([]string{"remove"}, args...)...); code != 0 {
		t.Fatalf("remove: exit %d:\n%s", code, out)
	}
	if got := ourRules(t, ns); len(got) != 0 {
		t.Errorf("rules left after remove: %q", got)
	}
	if got := reservedPorts(t, ns); got != "2000,8080" {
		t.Errorf("reserved ports after remove %q, want 2000,8080", got)
	}
	if code, out := runScript(t, ns, "status"); code != 1 || !strings.Contains(out, "none") {
		t.Errorf("status after remove: exit %d:\n%s", code, out)
	}

	// remove without arguments finds every tagged rule and the NAT range in them.
	ns.exec(t, "sysctl", "-q", "-w", "net.ipv4.ip_local_reserved_ports=2000,62000,8080")
	if code, out := runScript(t, ns, append([]string{"add"}, args...)...); code != 0 {
		t.Fatalf("add: exit %d:\n%s", code, out)
	}
	if got := reservedPorts(t, ns); got != "2000,8080,61000-65535" {
		t.Errorf("reserved ports %q", got)
	}
	if code, out := runScript(t, ns, "remove"); code != 0 {
		t.Fatalf("remove: exit %d:\n%s", code, out)
	}
	if got := ourRules(t, ns); len(got) != 0 {
		t.Errorf("rules left after remove: %q", got)
	}
	// A port of someone else's inside the NAT range is released with it (the
	// reservation has no owner); entries outside the range are kept.
	if got := reservedPorts(t, ns); got != "2000,8080" {
		t.Errorf("reserved ports after remove %q, want 2000,8080", got)
	}
	if code, out := runScript(t, ns, "remove"); code != 0 {
		t.Errorf("remove of nothing: exit %d:\n%s", code, out)
	}
	if after := strings.Join(foreign(), "\n"); after != before {
		t.Errorf("foreign rules changed:\n%s\nwant:\n%s", after, before)
	}

	// A range reserved before add is not the script's: remove leaves it reserved.
	ns.exec(t, "sysctl", "-q", "-w", "net.ipv4.ip_local_reserved_ports=61000-65535")
	if code, out := runScript(t, ns, append([]string{"add"}, args...)...); code != 0 {
		t.Fatalf("add: exit %d:\n%s", code, out)
	}
	if got := ourRules(t, ns); len(got) != len(want) || !strings.Contains(got[2], "--dport 61000:65535 -m comment --comment l4raw -j DROP") {
		t.Errorf("nat rule with a reservation made by someone else: %q", got)
	}
	if code, out := runScript(t, ns, append([]string{"status"}, args...)...); code != 0 {
		t.Errorf("status: exit %d:\n%s", code, out)
	}
	if code, out := runScript(t, ns, append([]string{"remove"}, args...)...); code != 0 {
		t.Fatalf("remove: exit %d:\n%s", code, out)
	}
	if got := reservedPorts(t, ns); got != "61000-65535" {
		t.Errorf("someone else's reservation after remove: %q, want 61000-65535", got)
	}
	if got := ourRules(t, ns); len(got) != 0 {
		t.Errorf("rules left after remove: %q", got)
	}
	ns.exec(t, "sysctl", "-q", "-w", "net.ipv4.ip_local_reserved_ports=")

	// Without --nat-ports the range sits above the ephemeral ports, as DefaultNATRange computes it.
	for _, tt := range []struct{ eph, reserved, want string }{
		{"32768 60999", "", "61000:65535"},
		{"32768 63000", "", "63001:65535"},
		{"1024 65535", "60000-65535", "60000:65535"},
	} {
		ns.exec(t, "sysctl", "-q", "-w", "net.ipv4.ip_local_port_range="+tt.eph)
		ns.exec(t, "sysctl", "-q", "-w", "net.ipv4.ip_local_reserved_ports="+tt.reserved)
		eph, rsv, err := parseTestPorts(tt.eph, tt.reserved)
		if err != nil {
			t.Fatal(err)
		}
		nat, err := DefaultNATRange(eph, rsv)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Replace(nat.String(), "-", ":", 1); got != tt.want {
			t.Fatalf("DefaultNATRange(%v, %v) = %v, want %s", eph, rsv, nat, tt.want)
		}
		if code, out := runScript(t, ns, "add", "--snat-ip", "198.18.0.1"); code != 0 {
			t.Fatalf("add with ephemeral %s: exit %d:\n%s", tt.eph, code, out)
		}
		if got := ourRules(t, ns); len(got) != 1 || !strings.Contains(got[0], "--dport "+tt.want+" ") {
			t.Errorf("ephemeral %s reserved %q: rules %q, want --dport %s", tt.eph, tt.reserved, got, tt.want)
		}
		if code, out := runScript(t, ns, "remove", "--snat-ip", "198.18.0.1"); code != 0 {
			t.Fatalf("remove: exit %d:\n%s", code, out)
		}
		if got := reservedPorts(t, ns); got != tt.reserved {
			t.Errorf("reserved after remove %q, want %q", got, tt.reserved)
		}
	}
	ns.exec(t, "sysctl", "-q", "-w", "net.ipv4.ip_local_reserved_ports=")
	ns.exec(t, "sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=1024 65000")
	if code, out := runScript(t, ns, "add", "--snat-ip", "198.18.0.1"); code != 3 ||
		!strings.Contains(out, "only 535 ports above the kernel's ephemeral ports 1024-65000 (need 1024): pass --nat-ports LO-HI") {
		t.Errorf("add with too few free ports: exit %d:\n%s", code, out)
	}

	// Not root: says so, exit 3, changes nothing.
	code, out = runScript(t, nil, "--help")
	if code != 0 {
		t.Fatalf("--help: %d %s", code, out)
	}
	o, err := output("ip", "netns", "exec", ns.name, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=-all", "--bounding-set=-all", setupScript(t), "add", "--vip", "198.18.0.100:80")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(string(o), "needs root") {
		t.Errorf("as nobody: %v:\n%s", err, o)
	}
	if got := ourRules(t, ns); len(got) != 0 {
		t.Errorf("rules after a refused add: %q", got)
	}
}

func parseTestPorts(eph, reserved string) (PortRange, []PortRange, error) {
	e, err := parseLocalPortRange(eph)
	if err != nil {
		return PortRange{}, nil, err
	}
	r, err := parseReservedPorts(reserved)
	return e, r, err
}
