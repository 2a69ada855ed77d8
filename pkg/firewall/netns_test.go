package firewall

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// needRoot skips a test that changes network namespaces when not run as root; as
// root, every missing tool is a failure.
func needRoot(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to create network namespaces and change their firewall")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("running as root but %s is missing: %v", tool, err)
		}
	}
}

// needNftNetlink fails the test unless this process can open the nftables
// netlink socket. qemu-user (7.2) cannot, and there the namespace option would
// crash inside mdlayher/socket, which drops the socket(2) error and hands back a
// nil Conn; failing here names the cause instead.
func needNftNetlink(t *testing.T) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		t.Fatalf("running as root but cannot open a NETLINK_NETFILTER socket (%v): no nf_tables here, or an emulator such as qemu-user", err)
	}
	_ = unix.Close(fd)
}

// netNS is a network namespace that belongs to one test.
type netNS struct {
	name string
	fd   int
}

// newNetNS creates "l4t-fw-<random>" with lo up and deletes it when the test ends,
// pass or fail.
func newNetNS(t *testing.T) *netNS {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	ns := &netNS{name: "l4t-fw-" + hex.EncodeToString(b), fd: -1}
	runCmd(t, "ip", "netns", "add", ns.name)
	t.Cleanup(func() {
		if out, err := output("ip", "netns", "del", ns.name); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns.name, err, out)
		}
	})
	fd, err := unix.Open("/run/netns/"+ns.name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open netns %s: %v", ns.name, err)
	}
	ns.fd = fd
	t.Cleanup(func() { _ = unix.Close(fd) })
	ns.ip(t, "link", "set", "lo", "up")
	return ns
}

// output runs a command, bounded in time, and returns its combined output.
func output(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}

func runCmd(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := output(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// exec runs a command inside the namespace.
func (ns *netNS) exec(t *testing.T, name string, args ...string) string {
	t.Helper()
	return runCmd(t, "ip", append([]string{"netns", "exec", ns.name, name}, args...)...)
}

func (ns *netNS) ip(t *testing.T, args ...string) string {
	t.Helper()
	return runCmd(t, "ip", append([]string{"-n", ns.name}, args...)...)
}

// do runs f on an OS thread that has entered the namespace. Sockets f creates stay
// in the namespace after f returns and may be used from any goroutine. The thread
// is never unlocked, so the runtime discards it instead of reusing a thread that
// sits in the wrong namespace.
func (ns *netNS) do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(ns.fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns.name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// vethPair joins a (address aAddr, a CIDR) and b (bAddr) with a veth pair named
// aIf in a and bIf in b.
func vethPair(t *testing.T, a *netNS, aIf, aAddr string, b *netNS, bIf, bAddr string) {
	t.Helper()
	a.ip(t, "link", "add", aIf, "type", "veth", "peer", "name", bIf, "netns", b.name)
	a.ip(t, "addr", "add", aAddr, "dev", aIf)
	b.ip(t, "addr", "add", bAddr, "dev", bIf)
	a.ip(t, "link", "set", aIf, "up")
	b.ip(t, "link", "set", bIf, "up")
}
