package firewall

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// lockName is unique per call, so parallel test runs on one host never share a lock.
func lockName(t *testing.T) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "test-" + hex.EncodeToString(b)
}

func TestLock(t *testing.T) {
	name := lockName(t)
	first, err := Lock(name)
	if err != nil {
		t.Fatal(err)
	}
	second, err := Lock(name)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Lock = %v, %v; want ErrLocked", second, err)
	}
	want := fmt.Sprintf("firewall: lock @l4raw/%s: another l4raw runs in this network namespace", name)
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	other, err := Lock(name + "-other")
	if err != nil {
		t.Fatalf("a different name is a different lock: %v", err)
	}
	defer other.Close()

	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	again, err := Lock(name)
	if err != nil {
		t.Fatalf("Lock after Close: %v", err)
	}
	_ = again.Close()
}

func TestLockName(t *testing.T) {
	for _, name := range []string{"", strings.Repeat("x", maxLockName+1), "a\x00b"} {
		if l, err := Lock(name); err == nil {
			_ = l.Close()
			t.Errorf("Lock(%q) succeeded", name)
		} else if !strings.Contains(err.Error(), "want 1 to 100 bytes") {
			t.Errorf("Lock(%q) = %v", name, err)
		}
	}
	long := lockName(t) + strings.Repeat("x", maxLockName-len(lockName(t)))
	l, err := Lock(long)
	if err != nil {
		t.Fatalf("Lock of a %d-byte name: %v", len(long), err)
	}
	_ = l.Close()
}

// A SIGKILLed owner must not leave the lock behind: the kernel drops the abstract
// name with the last descriptor. The owner here is a sleep(1) that inherited the
// lock's socket (re-running the test binary would not work under qemu-user).
func TestLockReleasedOnKill(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatalf("sleep(1) is needed to hold the lock in another process: %v", err)
	}
	name := lockName(t)
	l, err := Lock(name)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Dup(l.(*lock).fd)
	if err != nil {
		t.Fatal(err)
	}
	sock := os.NewFile(uintptr(fd), "lock")
	cmd := exec.Command(sleep, "60")
	cmd.ExtraFiles = []*os.File{sock}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	_ = sock.Close()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l, err := Lock(name); !errors.Is(err, ErrLocked) {
		if l != nil {
			_ = l.Close()
		}
		t.Fatalf("Lock while another process holds it = %v", err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	l, err = Lock(name)
	if err != nil {
		t.Fatalf("Lock after the holder was killed: %v", err)
	}
	_ = l.Close()
}

// The lock is per network namespace: the same name locks independently in a
// namespace of the test's own.
func TestLockPerNetNS(t *testing.T) {
	needRoot(t)
	name := lockName(t)
	l, err := Lock(name)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ns := newNetNS(t)
	if err := ns.do(func() error {
		inner, err := Lock(name)
		if err != nil {
			return err
		}
		if _, err := Lock(name); !errors.Is(err, ErrLocked) {
			return fmt.Errorf("second Lock inside the namespace = %v", err)
		}
		return inner.Close()
	}); err != nil {
		t.Fatal(err)
	}
}
