//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// debBuildTimeout bounds "make deb": four cross builds and three nfpm runs;
// the first "go run" of nfpm also downloads it (about 40 s here).
const debBuildTimeout = 10 * time.Minute

// moduleRoot is the directory holding go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	gomod, _, code, err := execute(CommandTimeout, "go", "env", "GOMOD")
	gomod = strings.TrimSpace(gomod)
	if err != nil || code != 0 || gomod == "" || gomod == os.DevNull {
		t.Fatalf("find the module root (go env GOMOD = %q): %v", gomod, err)
	}
	return filepath.Dir(gomod)
}

// runIn runs a command in dir, bounded by timeout, and fails the test on an
// error or a non-zero exit; it returns stdout.
func runIn(t *testing.T, dir string, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// debPackage is the amd64 package "make deb" built, with what the test
// expects of it.
type debPackage struct {
	path    string // dist/l4raw_<version>_amd64.deb
	version string // the Debian version
	stamp   string // what "l4raw --version" must print
}

// debOnce builds the packages once per run, the way a user does.
var debOnce struct {
	sync.Once
	pkg debPackage
	err error
}

// buildDeb runs "make deb" in the module root and returns the amd64 package.
// The version and commit are the Makefile's defaults (git describe and the
// short commit), so the packages are the ones "make deb" gives by hand.
func buildDeb(t *testing.T) debPackage {
	t.Helper()
	root := moduleRoot(t)
	debOnce.Do(func() {
		debOnce.err = func() error {
			ctx, cancel := context.WithTimeout(context.Background(), debBuildTimeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, "make", "-s", "deb")
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			out, err := cmd.CombinedOutput()
			if err != nil {
				return fmt.Errorf("make deb: %v\n%s", err, out)
			}
			var pkg string
			for _, l := range strings.Fields(string(out)) {
				if strings.HasPrefix(l, "dist/l4raw_") && strings.HasSuffix(l, "_amd64.deb") {
					pkg = l
				}
			}
			if pkg == "" {
				return fmt.Errorf("make deb named no amd64 package:\n%s", out)
			}
			ver := strings.TrimSuffix(strings.TrimPrefix(pkg, "dist/l4raw_"), "_amd64.deb")
			stamp, err := makeVar(root, "VERSION", "COMMIT")
			if err != nil {
				return err
			}
			debOnce.pkg = debPackage{path: filepath.Join(root, pkg), version: ver,
				stamp: fmt.Sprintf("l4raw %s (commit %s)", stamp[0], stamp[1])}
			return nil
		}()
	})
	if debOnce.err != nil {
		t.Fatal(debOnce.err)
	}
	return debOnce.pkg
}

// makeVar returns the values the Makefile gives its variables.
func makeVar(root string, names ...string) ([]string, error) {
	var vals []string
	for _, n := range names {
		cmd := exec.Command("make", "-s", "--no-print-directory", "-f", "-", "print")
		cmd.Dir = root
		cmd.Stdin = strings.NewReader("include Makefile\nprint:\n\t@echo $(" + n + ")\n")
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("make: value of %s: %v", n, err)
		}
		vals = append(vals, strings.TrimSpace(string(out)))
	}
	return vals, nil
}

// debFiles are the files the package must install, with their modes.
var debFiles = []struct {
	path string
	mode fs.FileMode
}{
	{"usr/bin/l4raw", 0o755},
	{"usr/lib/systemd/system/l4raw.service", 0o644},
	{"etc/l4raw/l4raw.yaml", 0o644},
	{"usr/share/doc/l4raw/README.md", 0o644},
	{"usr/share/doc/l4raw/copyright", 0o644},
}

// checkTree checks the package's files under root ("/" once installed).
func checkTree(t *testing.T, root string, pkg debPackage) {
	t.Helper()
	for _, f := range debFiles {
		fi, err := os.Stat(filepath.Join(root, f.path))
		if err != nil {
			t.Errorf("%s: %v", f.path, err)
			continue
		}
		if fi.Mode().Perm() != f.mode || !fi.Mode().IsRegular() {
			t.Errorf("%s: mode %v, want a regular file with %v", f.path, fi.Mode(), f.mode)
		}
	}
	bin := filepath.Join(root, "usr/bin/l4raw")
	if got := strings.TrimSpace(runIn(t, root, CommandTimeout, bin, "--version")); got != pkg.stamp {
		t.Errorf("l4raw --version = %q, want %q (the Makefile's stamp)", got, pkg.stamp)
	}
	cfg := filepath.Join(root, "etc/l4raw/l4raw.yaml")
	if out := runIn(t, root, CommandTimeout, bin, "check", "--config", cfg); !strings.Contains(out, ": ok (") {
		t.Errorf("l4raw check of the shipped config: %s", out)
	}
	cp, err := os.ReadFile(filepath.Join(root, "usr/share/doc/l4raw/copyright"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/",
		"Files: bundled/go/go", "Files: bundled/github.com/google/nftables@", "Files: bundled/golang.org/x/sys@"} {
		if !strings.Contains(string(cp), want) {
			t.Errorf("copyright: no %q", want)
		}
	}
}

// verifyUnit runs systemd-analyze verify on a unit (with --root when root is
// not "/"); it prints problems as warnings and may still exit 0, so any
// output fails the test.
func verifyUnit(t *testing.T, root, unit string) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatalf("systemd-analyze (apt-get install systemd) is needed to verify the unit: %v", err)
	}
	args := []string{"verify", unit}
	if root != "/" {
		args = []string{"--root=" + root, "verify", unit}
	}
	_, stderr, code, err := execute(CommandTimeout, "systemd-analyze", args...)
	if err != nil || code != 0 || strings.TrimSpace(stderr) != "" {
		t.Errorf("systemd-analyze %s: exit %d, %v:\n%s", strings.Join(args, " "), code, err, stderr)
	}
}

// TestSystemdUnit: the unit in deploy/ has the hardening the issue asks for
// and systemd-analyze accepts it.
func TestSystemdUnit(t *testing.T) {
	requireRoot(t)
	root := moduleRoot(t)
	unit, err := os.ReadFile(filepath.Join(root, "deploy/systemd/l4raw.service"))
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(unit)))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && !strings.HasPrefix(k, "#") {
			have[k] = v
		}
	}
	for k, v := range map[string]string{
		"ExecStart":               "/usr/bin/l4raw --config /etc/l4raw/l4raw.yaml",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"Restart":                 "on-failure",
		"DynamicUser":             "yes",
		"AmbientCapabilities":     "CAP_NET_RAW CAP_NET_ADMIN",
		"CapabilityBoundingSet":   "CAP_NET_RAW CAP_NET_ADMIN",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"RuntimeDirectory":        "l4raw",
		"RestrictAddressFamilies": "AF_PACKET AF_NETLINK AF_INET AF_INET6 AF_UNIX",
		"SystemCallArchitectures": "native",
		"LockPersonality":         "yes",
		"MemoryDenyWriteExecute":  "yes",
		"ProtectKernelTunables":   "yes",
	} {
		if have[k] != v {
			t.Errorf("%s=%q, want %q", k, have[k], v)
		}
	}
	// l4raw reads /proc/sys/net/ipv4/ip_local_port_range: /proc/sys must stay visible.
	if v, ok := have["ProcSubset"]; ok && v != "all" {
		t.Errorf("ProcSubset=%s hides /proc/sys", v)
	}
	for _, k := range []string{"PrivateNetwork", "PrivateUsers"} {
		if v, ok := have[k]; ok && v != "no" {
			t.Errorf("%s=%s: l4raw needs the host's network namespace", k, v)
		}
	}

	// A throw-away root: the host's units (for the targets the unit names),
	// the unit, and the binaries its commands name.
	tr := t.TempDir()
	unitDir := filepath.Join(tr, "usr/lib/systemd/system")
	for _, d := range []string{"usr/bin", "usr/lib/systemd"} {
		if err := os.MkdirAll(filepath.Join(tr, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	runIn(t, "/", CommandTimeout, "cp", "-a", "/usr/lib/systemd/system", filepath.Join(tr, "usr/lib/systemd/"))
	runIn(t, "/", CommandTimeout, "cp", filepath.Join(root, "deploy/systemd/l4raw.service"), unitDir)
	runIn(t, "/", CommandTimeout, "cp", L4raw(t), filepath.Join(tr, "usr/bin/l4raw"))
	linkBin(t, tr)
	verifyUnit(t, tr, filepath.Join(unitDir, "l4raw.service"))
}

// linkBin makes tr/bin the merged /usr/bin of Debian 12 and puts kill(1) in
// it, for ExecReload=/bin/kill.
func linkBin(t *testing.T, tr string) {
	t.Helper()
	if err := os.Symlink("usr/bin", filepath.Join(tr, "bin")); err != nil {
		t.Fatal(err)
	}
	kill, err := exec.LookPath("kill")
	if err != nil {
		t.Fatal(err)
	}
	runIn(t, "/", CommandTimeout, "cp", kill, filepath.Join(tr, "usr/bin/kill"))
}

// debField reads one control field of a package.
func debField(t *testing.T, deb, field string) string {
	t.Helper()
	return strings.TrimSpace(runIn(t, "/", CommandTimeout, "dpkg-deb", "--field", deb, field))
}

// TestDebPackage: "make deb" builds an amd64 package with the binary, the
// unit, the configuration as a conffile and the docs; unpacked into a
// throw-away root everything checks out; then dpkg -i installs it for real,
// systemd-analyze accepts the installed unit, l4raw --version prints the
// build's stamp, and dpkg -P removes every file again.
func TestDebPackage(t *testing.T) {
	requireRoot(t)
	for _, tool := range []string{"dpkg", "dpkg-deb", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed: %v", tool, err)
		}
	}
	pkg := buildDeb(t)
	t.Logf("%s: l4raw %s", filepath.Base(pkg.path), pkg.version)

	for field, want := range map[string]string{"Package": "l4raw", "Architecture": "amd64", "Version": pkg.version, "Section": "net"} {
		if got := debField(t, pkg.path, field); got != want {
			t.Errorf("control field %s = %q, want %q", field, got, want)
		}
	}
	if !regexp.MustCompile(`^[0-9]`).MatchString(pkg.version) {
		t.Errorf("Debian version %q does not start with a digit", pkg.version)
	}
	if dep := debField(t, pkg.path, "Depends"); dep != "" {
		t.Errorf("Depends: %q; the static binary needs nothing", dep)
	}
	ctrl := t.TempDir()
	runIn(t, "/", CommandTimeout, "dpkg-deb", "--control", pkg.path, ctrl)
	conffiles, err := os.ReadFile(filepath.Join(ctrl, "conffiles"))
	if err != nil || strings.TrimSpace(string(conffiles)) != "/etc/l4raw/l4raw.yaml" {
		t.Errorf("conffiles = %q (%v), want /etc/l4raw/l4raw.yaml", conffiles, err)
	}

	t.Run("unpacked", func(t *testing.T) {
		tr := t.TempDir()
		runIn(t, "/", CommandTimeout, "dpkg-deb", "-x", pkg.path, tr)
		checkTree(t, tr, pkg)
		// The host's units beside the package's, for the targets it names.
		runIn(t, "/", CommandTimeout, "cp", "-a", "-n", "/usr/lib/systemd/system/.", filepath.Join(tr, "usr/lib/systemd/system/"))
		linkBin(t, tr)
		verifyUnit(t, tr, filepath.Join(tr, "usr/lib/systemd/system/l4raw.service"))
	})

	t.Run("installed", func(t *testing.T) {
		// Only a machine without l4raw: the test must not replace or purge a
		// real installation.
		if out, code := statusOf("l4raw"); code == 0 && strings.Contains(out, "Status: install ok installed") {
			t.Fatalf("the l4raw package is installed on this machine already; this test installs and purges its own: remove it first (dpkg -P l4raw)")
		}
		for _, f := range debFiles {
			if _, err := os.Lstat("/" + f.path); err == nil {
				t.Fatalf("/%s exists but the l4raw package is not installed: move it away first", f.path)
			}
		}
		t.Cleanup(func() {
			if out, err := dpkg("-P", "l4raw"); err != nil {
				t.Errorf("dpkg -P l4raw: %v\n%s", err, out)
			}
			for _, f := range append(debFiles, struct {
				path string
				mode fs.FileMode
			}{"etc/l4raw", 0}) {
				if _, err := os.Lstat("/" + f.path); err == nil {
					t.Errorf("/%s left after dpkg -P", f.path)
				}
			}
		})
		if out, err := dpkg("-i", pkg.path); err != nil {
			t.Fatalf("dpkg -i: %v\n%s", err, out)
		}
		out, code := statusOf("l4raw")
		if code != 0 || !strings.Contains(out, "Status: install ok installed") || !strings.Contains(out, "Version: "+pkg.version) {
			t.Fatalf("dpkg -s l4raw (exit %d):\n%s", code, out)
		}
		if out, err := dpkg("--verify", "l4raw"); err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("dpkg --verify l4raw: %v\n%s", err, out)
		}
		checkTree(t, "/", pkg)
		verifyUnit(t, "/", "/usr/lib/systemd/system/l4raw.service")
	})
}

// statusOf is "dpkg -s NAME" with its exit code.
func statusOf(name string) (string, int) {
	out, _, code, err := execute(CommandTimeout, "dpkg", "-s", name)
	if err != nil {
		return err.Error(), -1
	}
	return out, code
}

// dpkgLockWait bounds the wait for another dpkg or apt run to finish.
const dpkgLockWait = 2 * time.Minute

// dpkg runs dpkg with args, waiting (bounded) while another package
// manager holds the dpkg lock.
func dpkg(args ...string) (string, error) {
	deadline := time.Now().Add(dpkgLockWait)
	for {
		out, stderr, code, err := execute(CommandTimeout, "dpkg", args...)
		if err != nil {
			return out + stderr, err
		}
		if code == 0 {
			return out + stderr, nil
		}
		if !strings.Contains(stderr, "lock") || time.Now().After(deadline) {
			return out + stderr, fmt.Errorf("exit code %d", code)
		}
		time.Sleep(2 * time.Second)
	}
}

// debootstrapTimeout bounds building the minimal Debian root once (about
// 90 s here: some 100 packages from the host's Debian mirror).
const debootstrapTimeout = 10 * time.Minute

// sysrootPackages are what the throw-away root needs beyond debootstrap's
// minbase: systemd as its init, procps for the unit's /bin/kill.
const sysrootPackages = "systemd,systemd-sysv,procps"

// sysrootCache keeps one debootstrapped root between runs (a /var/tmp file
// survives reboots, FHS 3.0); tests boot copies of it.
func sysrootCache(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"debootstrap", "systemd-nspawn", "nsenter", "cp"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed to boot the unit under systemd (apt-get install debootstrap systemd-container util-linux): %v", tool, err)
		}
	}
	suite := osRelease(t)["VERSION_CODENAME"]
	if suite == "" {
		t.Fatal("no VERSION_CODENAME in /etc/os-release: not a Debian host")
	}
	dir := filepath.Join("/var/tmp", "l4t-sysroot-"+suite)
	done := filepath.Join(dir, ".l4t-complete")
	if _, err := os.Stat(done); err == nil {
		return dir
	}
	os.RemoveAll(dir) // an incomplete one
	tmp, err := os.MkdirTemp("/var/tmp", "l4t-sysroot-build-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	t.Logf("debootstrap %s (minbase + %s): once, kept in %s", suite, sysrootPackages, dir)
	// No mirror argument: debootstrap's default Debian mirror.
	runIn(t, "/", debootstrapTimeout, "debootstrap", "--variant=minbase", "--include="+sysrootPackages, suite, filepath.Join(tmp, "root"))
	if err := os.WriteFile(filepath.Join(tmp, "root", ".l4t-complete"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(tmp, "root"), dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// osRelease reads /etc/os-release.
func osRelease(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = strings.Trim(v, `"`)
		}
	}
	return m
}

// container is a systemd booted by systemd-nspawn in a test namespace.
type container struct {
	*Proc
	leader int // the container's PID 1, as the host sees it
}

// exec runs a command inside every namespace of the container.
func (c *container) exec(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, stderr, code, err := execute(CommandTimeout, "nsenter", append([]string{"-t", fmt.Sprint(c.leader), "-a"}, args...)...)
	if err != nil {
		t.Fatalf("nsenter %v: %v", args, err)
	}
	return out + stderr, code
}

// pidNS is the PID namespace of a process, as a comparable link target.
func pidNS(pid int) string {
	ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	return ns
}

// hostPID finds the host PID of the container's process called comm.
func (c *container) hostPID(t *testing.T, comm string) int {
	t.Helper()
	want := pidNS(c.leader)
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil || pid == c.leader {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err == nil && strings.TrimSpace(string(b)) == comm && pidNS(pid) == want {
			return pid
		}
	}
	t.Fatalf("no %s process in the container", comm)
	return 0
}

// bootTimeout bounds the container's boot until l4raw forwards, and its
// shutdown (a few seconds each here).
const bootTimeout = 60 * time.Second

// TestSystemdService: the amd64 package installed in a minimal Debian root,
// its unit enabled, and that root booted with systemd in the LAN's balancer
// namespace: l4raw starts as a dynamic user with only CAP_NET_RAW and
// CAP_NET_ADMIN under the unit's whole sandbox (seccomp filter, read-only
// system, ProtectKernelTunables), forwards round robin, applies a changed
// file on "systemctl reload", and "systemctl stop" removes its guard.
func TestSystemdService(t *testing.T) {
	requireRoot(t)
	pkg := buildDeb(t)
	cache := sysrootCache(t)

	root := filepath.Join(t.TempDir(), "root")
	runIn(t, "/", CommandTimeout, "cp", "-a", cache, root)
	runIn(t, "/", CommandTimeout, "systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "-D", root,
		"--bind-ro="+pkg.path+":/run/l4raw.deb", "dpkg", "-i", "/run/l4raw.deb")

	lan := NewLAN(t, 3)
	lan.LB.Run(t, "ip", "addr", "add", lan.VIP.String()+"/32", "dev", lan.Ifname)
	lan.StartBackends(t, 8080)
	cfgFile := filepath.Join(root, "etc/l4raw/l4raw.yaml")
	writeConfig := func(backends ...netip.AddrPort) {
		var list []string
		for _, b := range backends {
			list = append(list, b.String())
		}
		cfg := fmt.Sprintf("services:\n  - name: web\n    vip: %s\n    port: 80\n    backends: [%s]\n", lan.VIP, strings.Join(list, ", "))
		if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig(lan.BackendAddrs(8080)...)
	wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants")
	if err := os.MkdirAll(wants, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr/lib/systemd/system/l4raw.service", filepath.Join(wants, "l4raw.service")); err != nil {
		t.Fatal(err)
	}

	// The container shares the balancer's network namespace (ip netns exec
	// starts nspawn there, and nspawn keeps it), but needs this process's
	// mount namespace: ip netns exec mounts a sysfs without the cgroup file
	// systems nspawn looks for. nspawn drops CAP_NET_ADMIN from the
	// container unless told, as a host would not.
	c := &container{Proc: lan.LB.Start(t, "nsenter", fmt.Sprintf("--mount=/proc/%d/ns/mnt", os.Getpid()), "--",
		"systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--capability=CAP_NET_ADMIN", "--boot", "-D", root)}
	// An orderly shutdown; if systemd does not take it, the harness's
	// SIGTERM to nspawn (then SIGKILL) ends the container.
	t.Cleanup(func() {
		if c.Running() && c.leader != 0 {
			if _, code := c.exec(t, "systemctl", "poweroff"); code == 0 {
				c.Wait(bootTimeout)
			}
		}
	})
	for deadline := time.Now().Add(bootTimeout); c.leader == 0; time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", c.Pid(), c.Pid()))
		if f := strings.Fields(string(b)); len(f) > 0 {
			fmt.Sscan(f[0], &c.leader)
		}
		if !c.Running() || time.Now().After(deadline) {
			t.Fatalf("systemd-nspawn started no container: %s", c.Output())
		}
	}
	journal := func() string { out, _ := c.exec(t, "journalctl", "-u", "l4raw", "--no-pager", "-o", "cat"); return out }
	t.Cleanup(func() {
		if t.Failed() && c.Running() {
			t.Logf("journal of l4raw.service:\n%s", journal())
		}
	})
	// Until l4raw says it forwards; a failed start (Restart=on-failure
	// counts it) ends the wait at once.
	for deadline := time.Now().Add(bootTimeout); !strings.Contains(journal(), "msg=forwarding"); time.Sleep(250 * time.Millisecond) {
		// systemctl fails until the container's systemd listens.
		if out, code := c.exec(t, "systemctl", "show", "-p", "NRestarts", "--value", "l4raw"); code == 0 && strings.TrimSpace(out) != "0" {
			t.Fatalf("l4raw.service failed to start (NRestarts=%s)", strings.TrimSpace(out))
		}
		if !c.Running() || time.Now().After(deadline) {
			t.Fatalf("l4raw.service not forwarding within %v", bootTimeout)
		}
	}
	lan.Client.WaitConnect(t, netip.AddrPortFrom(lan.VIP, 80), 5*time.Second)

	s := lan.Client.EchoGet(t, vipURL(lan.VIP), 300, 1)
	if s.OK != 300 {
		t.Fatalf("%d of 300 ok: %+v", s.OK, s.Errors)
	}
	for i := 1; i <= 3; i++ {
		if got := s.Backends[fmt.Sprintf("be%d", i)]; got != 100 {
			t.Errorf("be%d answered %d, want 100 (spread %v)", i, got, s.Backends)
		}
	}

	st := procStatus(t, c.hostPID(t, "l4raw"))
	if uid := strings.Fields(st["Uid"]); len(uid) == 0 || uid[0] == "0" {
		t.Errorf("l4raw runs with Uid %q, want a dynamic user", st["Uid"])
	}
	for _, set := range []string{"CapEff", "CapPrm", "CapBnd", "CapAmb"} {
		if v, err := strconv.ParseUint(st[set], 16, 64); err != nil || v != netCaps {
			t.Errorf("l4raw %s = %s, want %016x (CAP_NET_ADMIN, CAP_NET_RAW only)", set, st[set], netCaps)
		}
	}
	if st["NoNewPrivs"] != "1" || st["Seccomp"] != "2" {
		t.Errorf("NoNewPrivs %q, Seccomp %q; want 1 and 2 (a filter)", st["NoNewPrivs"], st["Seccomp"])
	}

	// Reload (ExecReload: SIGHUP) re-reads the file inside the sandbox:
	// without be3, new connections go to be1 and be2 only.
	writeConfig(lan.BackendAddrs(8080)[:2]...)
	if out, code := c.exec(t, "systemctl", "reload", "l4raw"); code != 0 {
		t.Fatalf("systemctl reload l4raw: exit %d: %s", code, out)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(journal(), "msg=reloaded"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no \"reloaded\" in the journal 10 s after systemctl reload")
		}
	}
	if out, _ := c.exec(t, "systemctl", "is-active", "l4raw"); strings.TrimSpace(out) != "active" {
		t.Errorf("after reload: %s", out)
	}
	if s := lan.Client.EchoGet(t, vipURL(lan.VIP), 30, 1); s.OK != 30 || s.Backends["be1"] != 15 || s.Backends["be2"] != 15 {
		t.Errorf("after the reload without be3: %+v", s)
	}
	if !guardTable(t, lan.LB) {
		t.Error("no guard table while the service runs")
	}
	if out, code := c.exec(t, "systemctl", "stop", "l4raw"); code != 0 {
		t.Errorf("systemctl stop l4raw: exit %d: %s", code, out)
	}
	if guardTable(t, lan.LB) {
		t.Error("guard table left after systemctl stop")
	}
	j := journal()
	for _, want := range []string{"msg=forwarding", "msg=reloaded", "guard removed", "conns_new"} {
		if !strings.Contains(j, want) {
			t.Errorf("journal of l4raw.service has no %q", want)
		}
	}
	c.exec(t, "systemctl", "poweroff")
	if _, err := c.Wait(bootTimeout); err != nil {
		t.Errorf("container did not power off: %v", err)
	}
}
