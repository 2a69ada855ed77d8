//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// CommandTimeout bounds every command the harness runs in the foreground;
// a transfer of a few GiB through a slow data path fits in it.
const CommandTimeout = 2 * time.Minute

// NS is a network namespace the test created; it is deleted at the end of
// the test.
type NS struct {
	Name string // l4t<id>-<role>
	Role string // cli, lb, be1, sw, ...
}

func (n *NS) String() string { return n.Name }

const (
	nsPrefix   = "l4t"
	idLen      = 5 // 36^5 ≈ 6e7 ids: collisions between concurrent runs are retried anyway
	markPrefix = "l4t-e2e"
	maxIDTries = 5
)

// nsName matches only names this harness gives, never the l4t-... ones
// that unit tests of other packages create.
var nsName = regexp.MustCompile(`^l4t[0-9a-z]{5}-[0-9a-z]+$`)

func newID() string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, idLen)
	for i := range b {
		b[i] = digits[rand.IntN(len(digits))]
	}
	return string(b)
}

// procStat returns the fields of /proc/PID/stat after the command name,
// so that index 0 is field 3 (state) of proc(5).
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces and ')'
	if i < 0 || i+2 > len(s) {
		return nil, fmt.Errorf("parse /proc/%d/stat: no command name", pid)
	}
	return strings.Fields(s[i+2:]), nil
}

// Indexes into procStat fields: proc(5) fields 14 utime, 15 stime and
// 22 starttime, minus 3.
const (
	statUtime     = 11
	statStime     = 12
	statStartTime = 19
)

// userHZ is the unit of the times in /proc/PID/stat: USER_HZ, fixed at 100
// by the Linux ABI on every architecture (proc(5), "clock ticks").
const userHZ = 100

func statUint(f []string, i int) (uint64, error) {
	if i >= len(f) {
		return 0, fmt.Errorf("stat has %d fields, want more than %d", len(f), i)
	}
	return strconv.ParseUint(f[i], 10, 64)
}

// startTime identifies a process across PID reuse.
func startTime(pid int) (uint64, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	return statUint(f, statStartTime)
}

// CPUTime is the user plus system CPU time of a running process (the caller
// of its threads; children not included), from /proc/PID/stat.
func CPUTime(t testing.TB, pid int) time.Duration {
	t.Helper()
	d, err := cpuTime(pid)
	if err != nil {
		t.Fatalf("cpu time of pid %d: %v", pid, err)
	}
	return d
}

func cpuTime(pid int) (time.Duration, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	u, err := statUint(f, statUtime)
	if err != nil {
		return 0, err
	}
	s, err := statUint(f, statStime)
	if err != nil {
		return 0, err
	}
	return time.Duration(u+s) * time.Second / userHZ, nil
}

// ownerMark is stored as the alias of a namespace's lo: it tells a later
// run which process owns the namespace, and that it is ours at all.
func ownerMark(pid int) (string, error) {
	st, err := startTime(pid)
	if err != nil {
		return "", fmt.Errorf("owner mark for pid %d: %w", pid, err)
	}
	return fmt.Sprintf("%s owner=%d start=%d", markPrefix, pid, st), nil
}

// parseMark reads an owner mark; ok is false for anything else.
func parseMark(s string) (pid int, start uint64, ok bool) {
	var p int
	var st uint64
	if n, err := fmt.Sscanf(s, markPrefix+" owner=%d start=%d", &p, &st); err != nil || n != 2 {
		return 0, 0, false
	}
	return p, st, true
}

// ownerAlive tells whether the process a mark names still runs. A zombie
// (a crashed run not yet reaped) counts as gone.
func ownerAlive(pid int, start uint64) bool {
	f, err := procStat(pid)
	if err != nil || len(f) == 0 || f[0] == "Z" || f[0] == "X" {
		return false
	}
	st, err := statUint(f, statStartTime)
	return err == nil && st == start
}

var errNSExists = errors.New("namespace exists")

// createNS adds a marked namespace and applies the settings every namespace
// gets. On error the namespace may exist; the caller deletes it.
func createNS(name, mark string) error {
	if _, stderr, code, err := execute(CommandTimeout, "ip", "netns", "add", name); err != nil {
		return err
	} else if code != 0 {
		if strings.Contains(stderr, "File exists") {
			return fmt.Errorf("add namespace %s: %w", name, errNSExists)
		}
		return fmt.Errorf("add namespace %s: %s", name, strings.TrimSpace(stderr))
	}
	if err := ipRun("-n", name, "link", "set", "dev", "lo", "up", "alias", mark); err != nil {
		return err
	}
	sysctls := []string{"net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"}
	if _, ok := ccAllowed(); ok {
		sysctls = append(sysctls, "net.ipv4.tcp_congestion_control="+congestionControl)
	}
	return nsSysctl(name, sysctls...)
}

// congestionControl is the algorithm of every namespace: cubic, the Linux
// default the data-path measurements were made with.
const congestionControl = "cubic"

// ccAllowed tells whether a namespace may default to congestionControl, and
// what the host allows.
func ccAllowed() (string, bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_allowed_congestion_control")
	if err != nil {
		return err.Error(), false
	}
	allowed := strings.TrimSpace(string(b))
	for _, a := range strings.Fields(allowed) {
		if a == congestionControl {
			return allowed, true
		}
	}
	return allowed, false
}

func nsSysctl(name string, kv ...string) error {
	args := append([]string{"netns", "exec", name, "sysctl", "-q", "-e", "-w"}, kv...)
	return ipRun(args...)
}

// ipRun runs ip with args and returns its stderr as the error on failure.
func ipRun(args ...string) error {
	_, stderr, code, err := execute(CommandTimeout, "ip", args...)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("ip %s: %s", strings.Join(args, " "), strings.TrimSpace(stderr))
	}
	return nil
}

// deleteNS kills what still runs inside a namespace and deletes it.
func deleteNS(name string) error {
	stdout, _, code, err := execute(CommandTimeout, "ip", "netns", "pids", name)
	if err == nil && code == 0 {
		for _, f := range strings.Fields(stdout) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	return ipRun("netns", "del", name)
}

// newNamespaces creates one namespace per role, l4t<id>-<role> with one id,
// each deleted at the end of the test.
func newNamespaces(t testing.TB, roles ...string) []*NS {
	t.Helper()
	requireRoot(t)
	mark, err := ownerMark(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var id string
	out := make([]*NS, 0, len(roles))
	for i, role := range roles {
		var name string
		for try := 0; ; try++ {
			if i == 0 {
				id = newID()
			}
			name = nsPrefix + id + "-" + role
			err = createNS(name, mark)
			if i > 0 || !errors.Is(err, errNSExists) || try == maxIDTries-1 {
				break
			}
		}
		if !errors.Is(err, errNSExists) {
			t.Cleanup(func() {
				if err := deleteNS(name); err != nil {
					t.Errorf("cleanup: %v", err)
				}
			})
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &NS{Name: name, Role: role})
	}
	return out
}

// NewNS creates a lone namespace (lo up, IPv6 off) with a fresh id.
func NewNS(t testing.TB, role string) *NS {
	t.Helper()
	return newNamespaces(t, role)[0]
}

// RemoveLeftovers deletes the namespaces an earlier run of this harness
// left behind: those with our name pattern and owner mark whose owner
// process is gone. It returns their names; logf reports what it leaves.
func RemoveLeftovers(logf func(format string, a ...any)) ([]string, error) {
	stdout, stderr, code, err := execute(CommandTimeout, "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	if code != 0 {
		return nil, fmt.Errorf("ip netns list: %s", strings.TrimSpace(stderr))
	}
	var removed []string
	var errs []error
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		f := strings.Fields(sc.Text()) // "name" or "name (id: 3)"
		if len(f) == 0 || !nsName.MatchString(f[0]) {
			continue
		}
		name := f[0]
		alias, err := loAlias(name)
		if err != nil {
			logf("leaving %s: %v", name, err)
			continue
		}
		pid, start, ok := parseMark(alias)
		if !ok {
			logf("leaving %s: no owner mark on lo (alias %q)", name, alias)
			continue
		}
		if ownerAlive(pid, start) {
			continue // a run in progress
		}
		if err := deleteNS(name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}

func loAlias(name string) (string, error) {
	stdout, stderr, code, err := execute(CommandTimeout, "ip", "-n", name, "-j", "link", "show", "dev", "lo")
	if err != nil {
		return "", err
	}
	if code != 0 {
		return "", fmt.Errorf("show lo in %s: %s", name, strings.TrimSpace(stderr))
	}
	var links []struct {
		IfAlias string `json:"ifalias"`
	}
	if err := json.Unmarshal([]byte(stdout), &links); err != nil || len(links) != 1 {
		return "", fmt.Errorf("show lo in %s: unexpected output %q", name, stdout)
	}
	return links[0].IfAlias, nil
}

// Run runs args inside the namespace (ip netns exec) and returns its stdout;
// a non-zero exit fails the test, showing the command's output.
func (n *NS) Run(t testing.TB, args ...string) string {
	t.Helper()
	stdout, stderr, code, err := n.exec(args)
	if err != nil {
		t.Fatalf("%s: %s: %v", n.Name, strings.Join(args, " "), err)
	}
	if code != 0 {
		t.Fatalf("%s: %s: exit code %d\n%s%s", n.Name, strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout
}

// RunStatus is Run for commands whose failure the test inspects: it returns
// stdout and the exit code, and logs stderr when the code is not 0. It fails
// the test only when the command cannot run or exceeds CommandTimeout.
func (n *NS) RunStatus(t testing.TB, args ...string) (stdout string, code int) {
	t.Helper()
	stdout, stderr, code, err := n.exec(args)
	if err != nil {
		t.Fatalf("%s: %s: %v", n.Name, strings.Join(args, " "), err)
	}
	if code != 0 && stderr != "" {
		t.Logf("%s: %s: exit code %d, stderr:\n%s", n.Name, strings.Join(args, " "), code, stderr)
	}
	return stdout, code
}

func (n *NS) exec(args []string) (stdout, stderr string, code int, err error) {
	return execute(CommandTimeout, "ip", append([]string{"netns", "exec", n.Name}, args...)...)
}

// Counters returns the namespace's SNMP and extended TCP/IP counters
// (/proc/net/snmp and /proc/net/netstat) named as nstat names them:
// TcpOutRsts, TcpInCsumErrors, TcpExtTCPTimeouts, IpExtInOctets, ...
func (n *NS) Counters(t testing.TB) map[string]uint64 {
	t.Helper()
	m, err := parseCounters(n.Run(t, "cat", "/proc/net/snmp", "/proc/net/netstat"))
	if err != nil {
		t.Fatalf("%s: counters: %v", n.Name, err)
	}
	return m
}

// Counter returns one counter of Counters; an unknown name fails the test.
func (n *NS) Counter(t testing.TB, name string) uint64 {
	t.Helper()
	v, ok := n.Counters(t)[name]
	if !ok {
		t.Fatalf("%s: no counter %q", n.Name, name)
	}
	return v
}

// TCPOutRsts is the number of TCP RSTs the namespace's kernel has sent: a
// kernel that answers for the VIP, or for NAT ports, shows up here.
func (n *NS) TCPOutRsts(t testing.TB) uint64 {
	t.Helper()
	return n.Counter(t, "TcpOutRsts")
}

// parseCounters reads the "Proto: names" / "Proto: values" line pairs of
// /proc/net/snmp and /proc/net/netstat. Negative values (Tcp MaxConn is -1,
// "no limit") are left out: the map is for counters.
func parseCounters(s string) (map[string]uint64, error) {
	m := map[string]uint64{}
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || len(names) != len(values) || names[0] != values[0] || !strings.HasSuffix(names[0], ":") {
			return nil, fmt.Errorf("line %d: not a name/value pair: %q", i+1, lines[i])
		}
		proto := strings.TrimSuffix(names[0], ":")
		for j := 1; j < len(names); j++ {
			v, err := strconv.ParseUint(values[j], 10, 64)
			if err != nil {
				continue
			}
			m[proto+names[j]] = v
		}
	}
	return m, nil
}
