//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
