//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The Raspberry Pi guide (deploy/pi/README.md) is run as written: every
// fenced block in it is either something to read (info string "text") or
// a command block (info string "sh") with a marker on the line before it:
//
//	<!-- settings -->                 the LAN's addresses as shell variables
//	<!-- run: HOST [OPTION ...] -->   commands for HOST: pi, client or backend
//
// Options of a run marker:
//
//	expect=fail    the one command of the block must fail (a check that
//	               something is absent, like ping to a free VIP)
//	wait=MSG       after the block, wait until the service's journal has one
//	               more "msg=MSG" line (l4raw forwards only a moment after
//	               systemctl returns, as a reader would notice)
//	only=VARIANT   only for the install variant deb or tarball
//	input=y        the reader answers y to the question the block asks
//	               (apt before it removes a package)
//
// The test replaces only the settings block, with addresses in
// 198.18.0.0/15, and runs the blocks in order: pi blocks as the user pi (with
// passwordless sudo, as Raspberry Pi OS sets it up) on a Debian booted with
// systemd in the Pi's namespace, client blocks in the phone's namespace,
// backend blocks on every backend. Anything else fails the test: a command
// block without a marker, a marker the test does not know, a settings name
// it has no value for, or an address written into a command instead of
// coming from the settings.

// guidePath is the guide, relative to the module root.
const guidePath = "deploy/pi/README.md"

// The home LAN of the test: 198.18.1.0/24 in place of the guide's
// 192.168.1.0/24, the same host numbers. The phone is in the router's DHCP
// pool; the router does not actually run DHCP.
const (
	homeNet      = "198.18.1."
	homeRouter   = 1
	homePi       = 2
	homeBackend1 = 11
	homeBackend2 = 12
	homeVIP      = 200
	homePhone    = 123
)

// piSettings are the test's values for the guide's settings block. ARCH is
// the tarball's architecture: amd64, like the packages the tests build and
// the machine the "Pi" runs on.
func piSettings() map[string]string {
	return map[string]string{
		"ROUTER":   addr(homeNet, homeRouter).String(),
		"PI_IP":    addr(homeNet, homePi).String(),
		"VIP":      addr(homeNet, homeVIP).String(),
		"BACKEND1": addr(homeNet, homeBackend1).String(),
		"BACKEND2": addr(homeNet, homeBackend2).String(),
		"ARCH":     "amd64",
	}
}

// guideBlock is one fenced command block of the guide.
type guideBlock struct {
	line       int    // of the opening fence, 1-based
	host       string // pi, client or backend
	expectFail bool
	wait       string
	only       string
	input      string // stdin: what the reader types
	body       string
}

func (b guideBlock) String() string {
	return fmt.Sprintf("%s:%d (%s)", guidePath, b.line, b.host)
}

// guide is the parsed guide: the names of its settings block, in order, and
// its command blocks.
type guide struct {
	settings []string
	blocks   []guideBlock
}

var (
	guideMarker  = regexp.MustCompile(`^<!-- (?:(settings)|run: ([a-z]+)((?: [a-z]+=[a-z-]+)*)) -->$`)
	settingsLine = regexp.MustCompile(`^([A-Z][A-Z0-9_]*)=(\S+)(?:\s+#.*)?$`)
	ipv4Literal  = regexp.MustCompile(`\b[0-9]{1,3}(?:\.[0-9]{1,3}){3}\b`)
)

// Hosts and variants a marker may name.
var (
	guideHosts    = []string{"pi", "client", "backend"}
	guideVariants = []string{"deb", "tarball"}
)

// parseGuide reads the guide's blocks and markers and checks their rules;
// every problem is reported, one per line.
func parseGuide(text string) (guide, error) {
	var g guide
	var errs []string
	bad := func(line int, format string, a ...any) {
		errs = append(errs, fmt.Sprintf("%s:%d: %s", guidePath, line, fmt.Sprintf(format, a...)))
	}
	lines := strings.Split(text, "\n")
	settingsSeen := false
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.HasPrefix(l, "<!--") {
			if !guideMarker.MatchString(l) {
				bad(i+1, "unknown marker %q", l)
			}
			if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "```") {
				bad(i+1, "marker %q is not right before a fenced block", l)
			}
			continue
		}
		if !strings.HasPrefix(l, "```") {
			continue
		}
		open := i
		info := strings.TrimSpace(strings.TrimPrefix(l, "```"))
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
		}
		if i >= len(lines) {
			bad(open+1, "fenced block not closed")
			break
		}
		body := strings.Join(lines[open+1:i], "\n")
		var m []string
		if open > 0 {
			m = guideMarker.FindStringSubmatch(lines[open-1])
		}
		switch {
		case info == "text":
			if m != nil {
				bad(open+1, "a text block has a marker: make it an sh block or drop the marker")
			}
			continue
		case info != "sh":
			bad(open+1, "fenced block with info string %q: want sh (commands) or text (to read)", info)
			continue
		case m == nil:
			bad(open+1, "sh block without a marker (<!-- run: HOST --> or <!-- settings -->): the test cannot run it")
			continue
		}
		if m[1] == "settings" {
			if settingsSeen {
				bad(open+1, "a second settings block")
			}
			if len(g.blocks) > 0 {
				bad(open+1, "the settings block comes after commands that use it")
			}
			settingsSeen = true
			for j, sl := range strings.Split(body, "\n") {
				sl = strings.TrimSpace(sl)
				if sl == "" || strings.HasPrefix(sl, "#") {
					continue
				}
				sm := settingsLine.FindStringSubmatch(sl)
				if sm == nil {
					bad(open+2+j, "settings line %q is not NAME=VALUE  # comment", sl)
					continue
				}
				g.settings = append(g.settings, sm[1])
			}
			continue
		}
		b := guideBlock{line: open + 1, host: m[2], body: body}
		if !slices.Contains(guideHosts, b.host) {
			bad(open, "unknown host %q: want one of %v", b.host, guideHosts)
		}
		for _, opt := range strings.Fields(m[3]) {
			k, v, _ := strings.Cut(opt, "=")
			switch {
			case k == "expect" && v == "fail":
				b.expectFail = true
			case k == "wait":
				b.wait = v
			case k == "only" && slices.Contains(guideVariants, v):
				b.only = v
			case k == "input" && v == "y":
				b.input = "y\n"
			default:
				bad(open, "unknown option %q", opt)
			}
		}
		if b.expectFail && len(commandLines(body)) != 1 {
			bad(open, "expect=fail needs exactly one command in its block, so that the failure is that command's")
		}
		if strings.TrimSpace(body) == "" {
			bad(open+1, "empty command block")
		}
		for _, a := range ipv4Literal.FindAllString(body, -1) {
			if a != "127.0.0.1" {
				bad(open+1, "address %s written into a command: use a name from the settings block", a)
			}
		}
		g.blocks = append(g.blocks, b)
	}
	if !settingsSeen {
		errs = append(errs, guidePath+": no settings block (<!-- settings -->)")
	}
	for _, h := range guideHosts {
		if !slices.ContainsFunc(g.blocks, func(b guideBlock) bool { return b.host == h }) {
			errs = append(errs, fmt.Sprintf("%s: no block runs on %s", guidePath, h))
		}
	}
	for _, v := range guideVariants {
		if !slices.ContainsFunc(g.blocks, func(b guideBlock) bool { return b.only == v }) {
			errs = append(errs, fmt.Sprintf("%s: no block for the %s install", guidePath, v))
		}
	}
	if len(errs) > 0 {
		return g, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return g, nil
}

// commandLines are the lines of a shell block that are not blank or
// comments.
func commandLines(body string) []string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// settingsScript is the test's settings block: the guide's names in the
// guide's order, with the test's values.
func settingsScript(t *testing.T, g guide) string {
	t.Helper()
	vals := piSettings()
	var sb strings.Builder
	for _, n := range g.settings {
		v, ok := vals[n]
		if !ok {
			t.Fatalf("%s: the settings block has %s, which the test has no value for", guidePath, n)
		}
		fmt.Fprintf(&sb, "%s=%s\n", n, v)
		delete(vals, n)
	}
	for n := range vals {
		t.Fatalf("%s: the settings block has no %s, which the test sets", guidePath, n)
	}
	return sb.String()
}

// TestPiGuideParse: the guide follows the rules above, and the parser finds
// what breaks them (quick, before TestPiGuide boots anything).
func TestPiGuideParse(t *testing.T) {
	text, err := os.ReadFile(filepath.Join(moduleRoot(t), guidePath))
	if err != nil {
		t.Fatal(err)
	}
	g, err := parseGuide(string(text))
	if err != nil {
		t.Fatal(err)
	}
	settingsScript(t, g)
	if !slices.ContainsFunc(g.blocks, func(b guideBlock) bool { return b.wait == "forwarding" }) ||
		!slices.ContainsFunc(g.blocks, func(b guideBlock) bool { return b.wait == "reloaded" }) {
		t.Error("the guide has no block that waits for forwarding and one for reloaded: the test checks the service at those points")
	}

	for _, tc := range []struct {
		name, text, want string
	}{
		{"unmarked sh", "<!-- settings -->\n```sh\nVIP=1\n```\n```sh\necho\n```\n", "without a marker"},
		{"no info", "```\nls\n```\n", `info string ""`},
		{"unknown host", "<!-- settings -->\n```sh\nVIP=1\n```\n<!-- run: router -->\n```sh\nls\n```\n", `unknown host "router"`},
		{"literal address", "<!-- settings -->\n```sh\nVIP=1\n```\n<!-- run: pi -->\n```sh\nping 192.168.1.5\n```\n", "address 192.168.1.5"},
		{"marker before text", "<!-- run: pi -->\n```text\nls\n```\n", "a text block has a marker"},
		{"stray marker", "<!-- run: pi -->\n\n```sh\nls\n```\n", "not right before"},
		{"two commands expected to fail", "<!-- settings -->\n```sh\nVIP=1\n```\n<!-- run: pi expect=fail -->\n```sh\nping a\nping b\n```\n", "exactly one command"},
	} {
		if _, err := parseGuide(tc.text); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: parse error %v, want one with %q", tc.name, err, tc.want)
		}
	}
}

// piRootPackages are what Raspberry Pi OS has and a Debian minbase lacks,
// for the guide's commands on the Pi (dbus: systemctl as a user).
const piRootPackages = "sudo iproute2 iputils-ping curl dbus"

// piRootCache is the package tests' Debian root plus piRootPackages, the
// user pi with passwordless sudo (Raspberry Pi OS's 010_pi-nopasswd) and
// its host name, built once beside it. apt's daily timers are masked: a
// download started at boot would hold the dpkg lock while the guide runs
// apt.
func piRootCache(t *testing.T) string {
	t.Helper()
	base := sysrootCache(t)
	dir := base + "-pi"
	done := filepath.Join(dir, ".l4t-complete")
	if _, err := os.Stat(done); err == nil {
		return dir
	}
	os.RemoveAll(dir) // an incomplete one
	tmp, err := os.MkdirTemp("/var/tmp", "l4t-pi-root-build-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "root")
	runIn(t, "/", CommandTimeout, "cp", "-a", base, root)
	if err := os.Remove(filepath.Join(root, ".l4t-complete")); err != nil {
		t.Fatal(err)
	}
	t.Logf("adding %s and the user pi to a copy of %s: once, kept in %s", piRootPackages, base, dir)
	script := "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends " + piRootPackages +
		" && useradd --create-home --shell /bin/bash --groups sudo,adm pi" +
		" && echo 'pi ALL=(ALL) NOPASSWD: ALL' >/etc/sudoers.d/010_pi-nopasswd && chmod 0440 /etc/sudoers.d/010_pi-nopasswd" +
		" && ln -s /dev/null /etc/systemd/system/apt-daily.timer && ln -s /dev/null /etc/systemd/system/apt-daily-upgrade.timer" +
		" && echo raspberrypi >/etc/hostname && echo '127.0.1.1 raspberrypi' >>/etc/hosts"
	runIn(t, "/", debootstrapTimeout, "systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "-D", root, "sh", "-c", script)
	if err := os.WriteFile(filepath.Join(root, ".l4t-complete"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(root, dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// distOnce runs "make dist" once per run, for the tarball and SHA256SUMS.
var distOnce struct {
	sync.Once
	tarball, sums string
	err           error
}

// buildDist runs "make dist" in the module root and returns the amd64
// tarball and the checksum file.
func buildDist(t *testing.T) (tarball, sums string) {
	t.Helper()
	root := moduleRoot(t)
	distOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), debBuildTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "make", "-s", "dist")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		b, err := cmd.CombinedOutput()
		out := string(b)
		if err != nil {
			distOnce.err = fmt.Errorf("make dist: %v\n%s", err, out)
			return
		}
		for _, f := range strings.Fields(out) {
			switch {
			case strings.HasPrefix(f, "dist/l4raw-") && strings.HasSuffix(f, "-linux-amd64.tar.gz"):
				distOnce.tarball = filepath.Join(root, f)
			case f == "dist/SHA256SUMS":
				distOnce.sums = filepath.Join(root, f)
			}
		}
		if distOnce.tarball == "" || distOnce.sums == "" {
			distOnce.err = fmt.Errorf("make dist named no amd64 tarball or no SHA256SUMS:\n%s", out)
		}
	})
	if distOnce.err != nil {
		t.Fatal(distOnce.err)
	}
	return distOnce.tarball, distOnce.sums
}

// piHome is the guide's home LAN in namespaces: a router as everyone's
// default gateway, the Pi (its Debian booted in the Pi's namespace), two
// backends, a phone, all on one switch.
type piHome struct {
	router, pi, phone *NS
	backends          []*NS
	c                 *container
	settings          string // the test's settings block
	vip, piIP         netip.Addr
	loBefore          string // the Pi's lo settings before l4raw
}

// newPiHome builds the LAN and starts the backends: l4echo on each backend's
// address and port 8080, and on the Pi's 127.0.0.1:8081 (the guide's
// "whatever service you run on the Pi").
func newPiHome(t *testing.T) *piHome {
	t.Helper()
	ns := newNamespaces(t, "sw", "rtr", "pi", "be1", "be2", "cli")
	h := &piHome{router: ns[1], pi: ns[2], backends: ns[3:5], phone: ns[5],
		vip: addr(homeNet, homeVIP), piIP: addr(homeNet, homePi)}
	gw := addr(homeNet, homeRouter)
	links := []link{
		{host: h.router, ifname: nsIfname, port: "rtr", bridge: "br0", ip: gw},
		{host: h.pi, ifname: nsIfname, port: "pi", bridge: "br0", ip: h.piIP, gw: &gw},
		{host: h.backends[0], ifname: nsIfname, port: "be1", bridge: "br0", ip: addr(homeNet, homeBackend1), gw: &gw},
		{host: h.backends[1], ifname: nsIfname, port: "be2", bridge: "br0", ip: addr(homeNet, homeBackend2), gw: &gw},
		{host: h.phone, ifname: nsIfname, port: "cli", bridge: "br0", ip: addr(homeNet, homePhone), gw: &gw},
	}
	wire(t, ns[0], []string{"br0"}, links)

	echo := L4echo(t)
	procs := []*Proc{h.pi.Start(t, echo, "serve", "--listen", "127.0.0.1:8081", "--name", "pi", "--cc", congestionControl)}
	for i, b := range h.backends {
		listen := netip.AddrPortFrom(links[2+i].ip, 8080).String()
		procs = append(procs, b.Start(t, echo, "serve", "--listen", listen, "--name", b.Role, "--cc", congestionControl))
	}
	for _, p := range procs {
		p.WaitFor(t, "msg=serving", serveReady)
	}
	h.loBefore = h.pi.Run(t, "sysctl", "-n", "net.ipv4.conf.lo.accept_local", "net.ipv4.conf.lo.route_localnet")
	return h
}

// boot starts systemd in a copy of root in the Pi's namespace and waits
// until it has booted. Unlike TestSystemdService's container, this one may
// write /proc/sys/net as root on a real Pi may
// (SYSTEMD_NSPAWN_API_VFS_WRITABLE=network): what the service may do is
// then up to its unit alone.
func (h *piHome) boot(t *testing.T, root string) {
	t.Helper()
	h.c = &container{Proc: h.pi.Start(t, "env", "SYSTEMD_NSPAWN_API_VFS_WRITABLE=network",
		"nsenter", fmt.Sprintf("--mount=/proc/%d/ns/mnt", os.Getpid()), "--",
		"systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--capability=CAP_NET_ADMIN", "--boot", "-D", root)}
	c := h.c
	t.Cleanup(func() {
		if c.Running() && c.leader != 0 {
			if _, code := c.exec(t, "systemctl", "poweroff"); code == 0 {
				c.Wait(bootTimeout)
			}
		}
	})
	// The leader is the child of nspawn that runs systemd: nspawn forks
	// helpers first that are gone a moment later.
	deadline := time.Now().Add(bootTimeout)
	for ; c.leader == 0; time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", c.Pid(), c.Pid()))
		for _, f := range strings.Fields(string(b)) {
			comm, _ := os.ReadFile("/proc/" + f + "/comm")
			if strings.TrimSpace(string(comm)) == "systemd" {
				fmt.Sscan(f, &c.leader)
			}
		}
		if !c.Running() || time.Now().After(deadline) {
			t.Fatalf("systemd-nspawn started no container: %s", c.Output())
		}
	}
	t.Cleanup(func() {
		if t.Failed() && c.Running() {
			t.Logf("journal of l4raw.service:\n%s", h.journal(t))
		}
	})
	// "degraded" is booted too: some units of a full system have no work
	// in a container.
	for state := ""; state != "running" && state != "degraded"; time.Sleep(100 * time.Millisecond) {
		out, _ := c.exec(t, "systemctl", "is-system-running")
		state = strings.TrimSpace(out)
		if !c.Running() || time.Now().After(deadline) {
			t.Fatalf("the Pi's systemd not up within %v: %q", bootTimeout, state)
		}
	}
}

func (h *piHome) journal(t *testing.T) string {
	t.Helper()
	out, _ := h.c.exec(t, "journalctl", "-u", "l4raw", "--no-pager", "-o", "cat")
	return out
}

// run runs one block of the guide on its host, or on every backend, and
// fails the test unless it ends as the block's marker says.
func (h *piHome) run(t *testing.T, b guideBlock) {
	t.Helper()
	script := "set -eu\n" + h.settings + b.body + "\n"
	var res []blockResult
	switch b.host {
	case "pi":
		stdout, stderr, code, err := executeInput(CommandTimeout, b.input, "nsenter", "-t", fmt.Sprint(h.c.leader), "-a",
			"runuser", "-l", "pi", "-c", script)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		res = append(res, blockResult{"pi", stdout + stderr, code})
	case "client":
		res = append(res, runInNS(t, h.phone, script, b.input))
	case "backend":
		for _, be := range h.backends {
			res = append(res, runInNS(t, be, script, b.input))
		}
	}
	for _, r := range res {
		t.Logf("%s on %s: exit %d\n%s", b, r.where, r.code, r.out)
		switch {
		case b.expectFail && (r.code == 0 || r.code >= 126):
			t.Fatalf("%s on %s: exit %d, want a failure of the command itself (1 to 125)", b, r.where, r.code)
		case !b.expectFail && r.code != 0:
			t.Fatalf("%s on %s: exit %d", b, r.where, r.code)
		}
	}
}

// blockResult is how a block ended on one host.
type blockResult struct {
	where, out string // host, stdout and stderr
	code       int
}

// runInNS runs a shell script as root in a namespace of the test.
func runInNS(t *testing.T, n *NS, script, input string) blockResult {
	t.Helper()
	stdout, stderr, code, err := executeInput(CommandTimeout, input, "ip", "netns", "exec", n.Name, "bash", "-c", script)
	if err != nil {
		t.Fatalf("%s: %v", n.Name, err)
	}
	return blockResult{n.Role, stdout + stderr, code}
}

// waitLog waits until the journal has more than before "msg=MSG" lines; a
// failed or restarted service ends the wait at once.
func (h *piHome) waitLog(t *testing.T, msg string, before int) {
	t.Helper()
	want := "msg=" + msg
	for deadline := time.Now().Add(bootTimeout); strings.Count(h.journal(t), want) <= before; time.Sleep(100 * time.Millisecond) {
		if out, code := h.c.exec(t, "systemctl", "show", "-p", "NRestarts", "--value", "l4raw"); code == 0 && strings.TrimSpace(out) != "0" {
			t.Fatalf("l4raw.service failed (NRestarts=%s) before %q", strings.TrimSpace(out), want)
		}
		if _, code := h.c.exec(t, "systemctl", "is-failed", "--quiet", "l4raw"); code == 0 {
			t.Fatalf("l4raw.service failed before %q", want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the journal of l4raw.service within %v", want, bootTimeout)
		}
	}
}

// spread is how many of count sequential connections through the VIP each
// backend answers.
type spread struct {
	count int
	want  map[string]int
}

// The guide's two configurations: round robin over the three backends, then
// weighted round robin 2:2:1 (50 connections are 10 whole cycles).
var (
	rrSpread  = spread{30, map[string]int{"be1": 10, "be2": 10, "pi": 10}}
	wrrSpread = spread{50, map[string]int{"be1": 20, "be2": 20, "pi": 10}}
)

// checkSpread sends the connections from the phone and compares.
func (h *piHome) checkSpread(t *testing.T, sp spread) {
	t.Helper()
	s := h.phone.EchoGet(t, vipURL(h.vip), sp.count, 1)
	if s.OK != sp.count {
		t.Fatalf("through the VIP: %d of %d ok: %+v", s.OK, sp.count, s)
	}
	for name, n := range sp.want {
		if s.Backends[name] != n {
			t.Errorf("%s answered %d of %d, want %d (spread %v)", name, s.Backends[name], sp.count, n, s.Backends)
		}
	}
}

// checkForwarding is what must hold whenever the service has (re)started or
// reloaded, beyond what the guide shows: the VIP is no address of the Pi,
// the phone resolves it to the Pi's MAC and reaches the three backends as
// the configuration says, the guard is in place and lo has what a backend
// on the Pi needs.
func (h *piHome) checkForwarding(t *testing.T, sp spread) {
	t.Helper()
	if out := h.pi.Run(t, "ip", "-br", "-4", "addr", "show"); strings.Contains(out, h.vip.String()+"/") {
		t.Errorf("the VIP is an address of the Pi:\n%s", out)
	}
	h.checkSpread(t, sp)
	if neigh, want := h.phone.Run(t, "ip", "neigh", "show", h.vip.String()), macFor(h.piIP); !strings.Contains(neigh, "lladdr "+want) {
		t.Errorf("the phone resolves the VIP to %q, want the Pi's MAC %s", strings.TrimSpace(neigh), want)
	}
	if !guardTable(t, h.pi) {
		t.Error("no guard table while the service forwards")
	}
	if lo := h.pi.Run(t, "sysctl", "-n", "net.ipv4.conf.lo.accept_local", "net.ipv4.conf.lo.route_localnet"); lo != "1\n1\n" {
		t.Errorf("lo accept_local, route_localnet = %q while forwarding to 127.0.0.1, want 1 and 1", lo)
	}
}

// checkRemoved is what must hold after the guide's removal: no l4raw runs,
// its guard table is gone, lo is as before, and once the phone forgets the
// VIP's MAC nothing answers for the VIP.
func (h *piHome) checkRemoved(t *testing.T) {
	t.Helper()
	if out, code := h.c.exec(t, "pgrep", "-a", "-x", "l4raw"); code == 0 {
		t.Errorf("l4raw still runs on the Pi: %s", out)
	}
	if guardTable(t, h.pi) {
		t.Error("guard table left on the Pi")
	}
	if lo := h.pi.Run(t, "sysctl", "-n", "net.ipv4.conf.lo.accept_local", "net.ipv4.conf.lo.route_localnet"); lo != h.loBefore {
		t.Errorf("lo accept_local, route_localnet = %q after removal, %q before", lo, h.loBefore)
	}
	h.phone.Run(t, "ip", "neigh", "flush", "dev", nsIfname)
	vip := netip.AddrPortFrom(h.vip, 80)
	if r := h.phone.EchoConnect(t, vip, 2*time.Second); r.Result == "ok" || r.Result == "refused" {
		t.Errorf("after removal a connect to %s is %s (%s): something still answers for the VIP", vip, r.Result, r.Error)
	}
	if neigh := h.phone.Run(t, "ip", "neigh", "show", h.vip.String()); strings.Contains(neigh, "lladdr") {
		t.Errorf("after removal the VIP still resolves: %s", strings.TrimSpace(neigh))
	}
}

// TestPiGuide: the Raspberry Pi guide, run as written on its home LAN, once
// with the Debian package and once with the tarball installed by hand.
func TestPiGuide(t *testing.T) {
	requireRoot(t)
	text, err := os.ReadFile(filepath.Join(moduleRoot(t), guidePath))
	if err != nil {
		t.Fatal(err)
	}
	g, err := parseGuide(string(text))
	if err != nil {
		t.Fatal(err)
	}
	for _, variant := range guideVariants {
		t.Run(variant, func(t *testing.T) {
			start := time.Now()
			var files []string // what the reader copies into the Pi's home directory
			switch variant {
			case "deb":
				files = []string{buildDeb(t).path}
			case "tarball":
				tb, sums := buildDist(t)
				files = []string{tb, sums}
			}
			cache := piRootCache(t)
			h := newPiHome(t)
			h.settings = settingsScript(t, g)
			root := filepath.Join(t.TempDir(), "root")
			runIn(t, "/", CommandTimeout, "cp", "-a", cache, root)
			home := filepath.Join(root, "home/pi")
			for _, f := range files {
				runIn(t, "/", CommandTimeout, "cp", f, home)
			}
			h.boot(t, root)
			t.Logf("%s: LAN and booted Pi ready after %v", variant, time.Since(start).Round(time.Millisecond))

			ran := 0
			spread := rrSpread // the guide's configuration in force
			for _, b := range g.blocks {
				if b.only != "" && b.only != variant {
					continue
				}
				before := 0
				if b.wait != "" {
					before = strings.Count(h.journal(t), "msg="+b.wait)
				}
				h.run(t, b)
				ran++
				if b.wait == "" {
					continue
				}
				h.waitLog(t, b.wait, before)
				if b.wait == "reloaded" {
					// The guide's change: wrr with weights 2, 2 and 1; 50
					// sequential connections are 10 whole cycles.
					spread = wrrSpread
				}
				h.checkForwarding(t, spread)
			}
			h.checkRemoved(t)
			if out, code := h.c.exec(t, "dpkg-query", "-W", "-f", "${db:Status-Status}", "l4raw"); code == 0 && strings.TrimSpace(out) != "not-installed" {
				t.Errorf("after the guide's removal dpkg says l4raw is %q", out)
			}
			for _, f := range []string{"usr/bin/l4raw", "etc/l4raw", "etc/systemd/system/l4raw.service",
				"usr/lib/systemd/system/l4raw.service", "etc/systemd/system/multi-user.target.wants/l4raw.service"} {
				if _, err := os.Lstat(filepath.Join(root, f)); err == nil {
					t.Errorf("/%s left on the Pi after the guide's removal", f)
				}
			}
			t.Logf("%s: %d blocks of the guide ran; %v in all", variant, ran, time.Since(start).Round(time.Millisecond))
		})
	}
}
