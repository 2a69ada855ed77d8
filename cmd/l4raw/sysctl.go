package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strings"
	"syscall"
)

// loSysctls are what backends on the balancer itself need. Frames l4raw
// writes to lo have no route attached, so the kernel routes them as input:
// their source is a local address (accept_local), and for 127.0.0.0/8 the
// destination is a loopback address (route_localnet). Both settings are of
// lo alone, where no frame from outside ever arrives.
var loSysctls = []struct {
	path     string
	loopback bool // needed only for 127.0.0.0/8 backends
}{
	{"net/ipv4/conf/lo/accept_local", false},
	{"net/ipv4/conf/lo/route_localnet", true},
}

// ensureLoSysctls sets what local backends need and returns a function that
// restores what it changed.
func (d *daemon) ensureLoSysctls(local map[netip.Addr]netip.Addr) (restore func(), err error) {
	if len(local) == 0 {
		return func() {}, nil
	}
	loopback := false
	for a := range local {
		loopback = loopback || a.IsLoopback()
	}
	var undo []func()
	restore = func() {
		for _, u := range undo {
			u()
		}
	}
	for _, s := range loSysctls {
		if s.loopback && !loopback {
			continue
		}
		file := "/proc/sys/" + s.path
		old, err := os.ReadFile(file)
		if err != nil {
			restore()
			return nil, fmt.Errorf("read %s: %w", file, err)
		}
		if strings.TrimSpace(string(old)) == "1" {
			continue
		}
		name := strings.ReplaceAll(s.path, "/", ".")
		if err := os.WriteFile(file, []byte("1\n"), 0o644); err != nil {
			restore()
			if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
				return nil, usagef("backends on this host need %s=1 (l4raw could not set it: %v): run `sysctl -w %s=1`", name, err, name)
			}
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
		d.log.Info("set for backends on this host", "sysctl", name, "value", 1, "was", strings.TrimSpace(string(old)))
		undo = append(undo, func() {
			if err := os.WriteFile(file, old, 0o644); err == nil {
				d.log.Info("restored", "sysctl", name, "value", strings.TrimSpace(string(old)))
			}
		})
	}
	return restore, nil
}
