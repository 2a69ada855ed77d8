package firewall

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
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
// name with the last descriptor.
func TestLockReleasedOnKill(t *testing.T) {
	name := lockName(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), holderEnv+"="+name)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- line
	}()
	select {
	case line := <-ready:
		if line != "locked\n" {
			t.Fatalf("holder said %q", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("holder did not take the lock within 10 s")
	}
	if l, err := Lock(name); !errors.Is(err, ErrLocked) {
		if l != nil {
			_ = l.Close()
		}
		t.Fatalf("Lock while another process holds it = %v", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	l, err := Lock(name)
	if err != nil {
		t.Fatalf("Lock after the holder was killed: %v", err)
	}
	_ = l.Close()
}

// holderEnv names the lock a child process of TestLockReleasedOnKill holds.
const holderEnv = "L4RAW_TEST_LOCK_HOLDER"

// TestMain turns the test binary into that child when holderEnv is set: it takes
// the lock, says so and waits to be killed (at most a minute).
func TestMain(m *testing.M) {
	if name := os.Getenv(holderEnv); name != "" {
		if _, err := Lock(name); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("locked")
		time.Sleep(time.Minute)
		os.Exit(1)
	}
	os.Exit(m.Run())
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
