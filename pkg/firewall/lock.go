package firewall

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrLocked means another process holds the lock: two l4raw instances in one
// network namespace would replace each other's guard table.
var ErrLocked = errors.New("another l4raw runs in this network namespace")

// lockPrefix starts the abstract socket name; "@" marks the abstract namespace
// (unix(7)), which x/sys/unix turns into the leading NUL byte.
const lockPrefix = "@l4raw/"

// maxLockName keeps "@l4raw/NAME" within sun_path (108 bytes, unix(7)), which
// x/sys/unix fills only up to 107 bytes.
const maxLockName = 107 - len(lockPrefix)

// Lock takes the single-instance lock called name in the caller's network
// namespace by binding the abstract unix socket "@l4raw/<name>". Abstract sockets
// belong to a network namespace and vanish with the last descriptor, so the lock
// is per namespace and a SIGKILLed owner never leaves a stale one. Keep the Closer
// for as long as the lock is needed: nothing closes it behind the caller's back.
func Lock(name string) (io.Closer, error) {
	if name == "" || len(name) > maxLockName || strings.ContainsRune(name, 0) {
		return nil, fmt.Errorf("firewall: lock %q: want 1 to %d bytes, no NUL", name, maxLockName)
	}
	addr := lockPrefix + name
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("firewall: lock %s: %w", addr, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: addr}); err != nil {
		_ = unix.Close(fd)
		if errors.Is(err, unix.EADDRINUSE) {
			return nil, fmt.Errorf("firewall: lock %s: %w", addr, ErrLocked)
		}
		return nil, fmt.Errorf("firewall: lock %s: %w", addr, err)
	}
	return &lock{fd: fd}, nil
}

type lock struct {
	mu sync.Mutex
	fd int // -1 once closed
}

// Close releases the lock; closing twice is a no-op.
func (l *lock) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fd < 0 {
		return nil
	}
	err := unix.Close(l.fd)
	l.fd = -1
	if err != nil {
		return fmt.Errorf("firewall: unlock: %w", err)
	}
	return nil
}
