//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// RootMessage is how every e2e test fails when it runs without privileges.
const RootMessage = "e2e tests need root (CAP_NET_ADMIN, CAP_NET_RAW): run sudo make test"

// Capabilities the harness needs, from linux/capability.h.
const (
	capNetAdmin = 12 // interfaces, addresses, routes, sysctls in a namespace
	capNetRaw   = 13 // AF_PACKET for l4raw
	capSysAdmin = 21 // "ip netns add" mounts and unshares
)

// privilegeProblem says what is missing to run e2e tests, or "" if nothing.
func privilegeProblem() string {
	if os.Geteuid() != 0 {
		return RootMessage
	}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return fmt.Sprintf("%s (read capabilities: %v)", RootMessage, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		eff, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return fmt.Sprintf("%s (CapEff %q: %v)", RootMessage, v, err)
		}
		var missing []string
		for _, c := range []struct {
			bit  uint
			name string
		}{{capNetAdmin, "CAP_NET_ADMIN"}, {capNetRaw, "CAP_NET_RAW"}, {capSysAdmin, "CAP_SYS_ADMIN"}} {
			if eff&(1<<c.bit) == 0 {
				missing = append(missing, c.name)
			}
		}
		if len(missing) > 0 {
			return fmt.Sprintf("%s (root without %s)", RootMessage, strings.Join(missing, ", "))
		}
		return ""
	}
	return RootMessage + " (no CapEff in /proc/self/status)"
}

// requireRoot fails the test (never skips it) without the privileges.
func requireRoot(t testing.TB) {
	t.Helper()
	if p := privilegeProblem(); p != "" {
		t.Fatal(p)
	}
}

// Main is the body of this package's TestMain: it fails the whole run
// without root, removes namespaces left by a crashed earlier run, runs the
// tests and removes the binaries it built.
//
//	func TestMain(m *testing.M) { os.Exit(e2e.Main(m)) }
func Main(m *testing.M) int {
	if p := privilegeProblem(); p != "" {
		fmt.Fprintln(os.Stderr, "FAIL:", p)
		return 1
	}
	logf := func(format string, a ...any) { fmt.Fprintf(os.Stderr, "e2e: "+format+"\n", a...) }
	removed, err := RemoveLeftovers(logf)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: e2e: remove leftovers:", err)
		return 1
	}
	if len(removed) > 0 {
		logf("removed %d namespaces left by an earlier run: %s", len(removed), strings.Join(removed, " "))
	}
	if allowed, ok := ccAllowed(); !ok {
		logf("namespaces keep the host's default congestion control: cubic is not in net.ipv4.tcp_allowed_congestion_control (%s); l4echo sockets use --cc cubic", allowed)
	}
	code := m.Run()
	removeBinaries()
	return code
}
