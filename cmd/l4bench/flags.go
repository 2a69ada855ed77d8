package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// newFlagSet returns a flag set that reports nothing itself: parseFlags turns
// every problem into one line on stderr and exit code 2.
func newFlagSet(cmd, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("l4bench "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: l4bench %s %s\n", cmd, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; when it returns done, the command must exit with
// code at once (help printed, or a one-line error). Positional arguments
// are refused unless allowArgs.
func parseFlags(e env, fs *flag.FlagSet, args []string, allowArgs bool) (code int, done bool) {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(e.stdout)
		fs.Usage()
		return exitOK, true
	}
	if err != nil {
		return usageError(e, fs, "%v", err), true
	}
	if !allowArgs && fs.NArg() > 0 {
		return usageError(e, fs, "unexpected argument %q", fs.Arg(0)), true
	}
	return exitOK, false
}

// usageError prints one line naming the command and returns exitUsage.
func usageError(e env, fs *flag.FlagSet, format string, a ...any) int {
	fmt.Fprintf(e.stderr, "%s: %s\n", fs.Name(), fmt.Sprintf(format, a...))
	return exitUsage
}

// failf prints one line naming the command and returns exitFail.
func failf(e env, fs *flag.FlagSet, format string, a ...any) int {
	fmt.Fprintf(e.stderr, "%s: %s\n", fs.Name(), fmt.Sprintf(format, a...))
	return exitFail
}

// parseAddrPorts reads a comma-separated list of IPv4 IP:PORT.
func parseAddrPorts(s string) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		ap, err := netip.ParseAddrPort(f)
		if err != nil || !ap.Addr().Is4() || ap.Port() == 0 {
			return nil, fmt.Errorf("%q: want IPv4 IP:PORT", f)
		}
		out = append(out, ap)
	}
	if len(out) == 0 {
		return nil, errors.New("no address")
	}
	return out, nil
}

// parseAddrs reads a comma-separated list of IPv4 addresses; empty is none.
func parseAddrs(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("%q: want an IPv4 address", f)
		}
		out = append(out, a)
	}
	return out, nil
}

// sockOpts returns a net.Dialer/ListenConfig Control function that sets TCP
// congestion control cc (empty: the namespace default) and, for a dialer
// bound to a source address, IP_BIND_ADDRESS_NO_PORT. Per socket, a process
// with CAP_NET_ADMIN may pick any available algorithm; a network namespace's
// default can only be one of net.ipv4.tcp_allowed_congestion_control.
//
// IP_BIND_ADDRESS_NO_PORT defers the source port choice from bind(2) to
// connect(2): the port is then unique per 4-tuple, not per local address,
// which is how an unbound client socket picks it too (ip(7)).
func sockOpts(cc string, noPort bool) func(network, address string, c syscall.RawConn) error {
	if cc == "" && !noPort {
		return nil
	}
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if cc != "" {
				if err := unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, cc); err != nil {
					serr = fmt.Errorf("set tcp congestion control %q: %w", cc, err)
					return
				}
			}
			if noPort {
				if err := unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1); err != nil {
					serr = fmt.Errorf("set IP_BIND_ADDRESS_NO_PORT: %w", err)
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
}
