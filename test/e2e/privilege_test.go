//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// nobody is the unprivileged user l4raw runs as in these tests: the
// overflow UID and GID of Debian's base-passwd (65534), which owns no files.
const nobody = "65534"

// asNobody is the setpriv prefix that runs a command as nobody with exactly
// caps (lower-case names without "cap_") in its effective, permitted,
// inheritable, ambient and bounding sets, and no_new_privs: what the
// systemd unit's User=/DynamicUser=, AmbientCapabilities=,
// CapabilityBoundingSet= and NoNewPrivileges= give the service.
func asNobody(caps ...string) []string {
	set := "-all"
	for _, c := range caps {
		set += ",+" + c
	}
	return []string{"setpriv", "--reuid=" + nobody, "--regid=" + nobody, "--clear-groups",
		"--inh-caps=" + set, "--ambient-caps=" + set, "--bounding-set=" + set, "--no-new-privs", "--"}
}

// publicCopy copies the binary at src into a fresh world-readable directory,
// since the harness builds into a directory only root may enter.
func publicCopy(t *testing.T, src string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "l4t-priv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dst := filepath.Join(dir, filepath.Base(src))
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// Capability bits of linux/capability.h, as in /proc/PID/status.
const netCaps = 1<<capNetAdmin | 1<<capNetRaw

// procStatus reads the named fields of /proc/PID/status.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

// openForWriting lists the process's descriptors that refer to a file
// system object opened for writing (not sockets, pipes, anonymous inodes or
// /dev/null).
func openForWriting(t *testing.T, pid int) []string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil || !strings.HasPrefix(target, "/") || target == os.DevNull {
			continue
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		for _, l := range strings.Split(string(info), "\n") {
			v, ok := strings.CutPrefix(l, "flags:")
			if !ok {
				continue
			}
			flags, err := strconv.ParseUint(strings.TrimSpace(v), 8, 64)
			if err == nil && flags&0o3 != 0 { // O_WRONLY or O_RDWR (fcntl.h)
				out = append(out, fmt.Sprintf("fd %s -> %s (flags %s)", e.Name(), target, strings.TrimSpace(v)))
			}
		}
	}
	return out
}

// writableByNobody are the places an unprivileged process can create files
// on a Debian host: the root file system's world-writable directories and
// the tmpfs mounts.
var writableByNobody = []string{"/", "/tmp", "/var/tmp", "/dev/shm", "/run"}

// filesOwnedBy lists files owned by uid that changed since start. l4raw
// runs as nobody without CAP_DAC_OVERRIDE or CAP_FOWNER, so anything it
// wrote to disk would be a file it owns.
func filesOwnedBy(t *testing.T, uid string, since time.Time) []string {
	t.Helper()
	var found []string
	seen := map[string]bool{}
	for _, root := range writableByNobody {
		if _, err := os.Stat(root); err != nil {
			continue
		}
		out, stderr, code, err := execute(CommandTimeout, "find", root, "-xdev", "-user", uid,
			"-newermt", since.Format("2006-01-02 15:04:05.000000000"), "-print")
		if err != nil {
			t.Fatalf("find %s: %v", root, err)
		}
		// find exits 1 when a directory it may not read vanished under it;
		// only a missing answer is an error.
		if code != 0 && strings.TrimSpace(out) == "" && !strings.Contains(stderr, "No such file") {
			t.Fatalf("find %s: exit %d: %s", root, code, stderr)
		}
		for _, f := range strings.Fields(out) {
			if !seen[f] {
				seen[f] = true
				found = append(found, f)
			}
		}
	}
	return found
}

// guardTable tells whether l4raw's nftables table exists in ns.
func guardTable(t *testing.T, ns *NS) bool {
	t.Helper()
	out := ns.Run(t, "nft", "list", "tables")
	return strings.Contains(out, "inet l4raw")
}

// lanArgs are l4raw's flags for the LAN's VIP:80 and every backend on 8080.
func lanArgs(lan *LAN) []string {
	args := []string{"--vip", netip.AddrPortFrom(lan.VIP, 80).String()}
	for _, ip := range lan.BackendIPs {
		args = append(args, "--backend", netip.AddrPortFrom(ip, 8080).String())
	}
	return args
}

// TestLeastPrivilege: l4raw as nobody with only CAP_NET_RAW and
// CAP_NET_ADMIN forwards on the LAN, round robin, installs and removes its
// guard, and writes nothing to disk.
func TestLeastPrivilege(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("setpriv (util-linux) is needed to drop privileges: %v", err)
	}
	lan := NewLAN(t, 3)
	lan.LB.Run(t, "ip", "addr", "add", lan.VIP.String()+"/32", "dev", lan.Ifname)
	lan.StartBackends(t, 8080)
	bin := publicCopy(t, L4raw(t))

	start := time.Now().Add(-time.Second) // find's -newermt compares with the file system's clock granularity
	p := lan.LB.Start(t, append(append(asNobody("net_raw", "net_admin"), bin), lanArgs(lan)...)...)
	p.WaitFor(t, "msg=forwarding", 20*time.Second)
	b := &balancer{Proc: p, ns: lan.LB}

	st := procStatus(t, p.Pid())
	if f := strings.Fields(st["Uid"]); len(f) != 4 || f[0] != nobody || f[1] != nobody || f[2] != nobody || f[3] != nobody {
		t.Errorf("l4raw runs with Uid %q, want %s for real, effective, saved and fs", st["Uid"], nobody)
	}
	if g := strings.Fields(st["Groups"]); len(g) != 0 {
		t.Errorf("l4raw has supplementary groups %v, want none", g)
	}
	for _, set := range []string{"CapEff", "CapPrm", "CapBnd", "CapAmb"} {
		v, err := strconv.ParseUint(st[set], 16, 64)
		if err != nil || v != netCaps {
			t.Errorf("l4raw %s = %s, want %016x (CAP_NET_ADMIN, CAP_NET_RAW only)", set, st[set], netCaps)
		}
	}
	if st["NoNewPrivs"] != "1" {
		t.Errorf("NoNewPrivs = %q, want 1", st["NoNewPrivs"])
	}
	if !guardTable(t, lan.LB) {
		t.Error("no guard table while l4raw runs as nobody")
	}

	s := lan.Client.EchoGet(t, vipURL(lan.VIP), 300, 1)
	if s.OK != 300 {
		t.Fatalf("%d of 300 ok: %+v", s.OK, s.Errors)
	}
	for i := 1; i <= 3; i++ {
		if got := s.Backends[fmt.Sprintf("be%d", i)]; got != 100 {
			t.Errorf("be%d answered %d, want 100 (spread %v)", i, got, s.Backends)
		}
	}
	if w := openForWriting(t, p.Pid()); len(w) > 0 {
		t.Errorf("l4raw holds files open for writing: %v", w)
	}
	if c := b.counters(t); c["conns_new"] != 300 {
		t.Errorf("conns_new %d, want 300", c["conns_new"])
	}
	noKernelRSTs(t, lan.LB)
	if code, _ := b.stop(t); code != 0 {
		t.Errorf("exit code %d", code)
	}
	if guardTable(t, lan.LB) {
		t.Error("guard table left after SIGTERM: nobody with CAP_NET_ADMIN must remove it")
	}
	if files := filesOwnedBy(t, nobody, start); len(files) > 0 {
		t.Errorf("files owned by %s changed while l4raw ran as that user: %v", nobody, files)
	}
}

// TestMissingCapability: without one of the two capabilities l4raw stops
// at once with exit code 1 and one line naming the missing capability, and
// leaves no guard table behind.
func TestMissingCapability(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("setpriv (util-linux) is needed to drop privileges: %v", err)
	}
	lan := NewLAN(t, 1)
	lan.LB.Run(t, "ip", "addr", "add", lan.VIP.String()+"/32", "dev", lan.Ifname)
	lan.StartBackends(t, 8080)
	bin := publicCopy(t, L4raw(t))
	for _, tc := range []struct {
		name    string
		caps    []string
		missing string // in the last line
	}{
		{"without CAP_NET_ADMIN", []string{"net_raw"}, "CAP_NET_ADMIN"},
		{"without CAP_NET_RAW", []string{"net_admin"}, "CAP_NET_RAW"},
		{"without both", nil, "CAP_NET_"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := lan.LB.Start(t, append(append(asNobody(tc.caps...), bin), lanArgs(lan)...)...)
			code, err := p.Wait(30 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			out := strings.TrimSpace(p.Output())
			last := out[strings.LastIndexByte(out, '\n')+1:]
			t.Logf("exit %d, last line: %s", code, last)
			if code != 1 || !strings.HasPrefix(last, "l4raw: ") || !strings.Contains(last, "l4raw needs "+tc.missing) {
				t.Errorf("exit %d, last line %q; want exit 1 and a line saying l4raw needs %s", code, last, tc.missing)
			}
			if guardTable(t, lan.LB) {
				t.Error("guard table left behind")
			}
		})
	}
}
