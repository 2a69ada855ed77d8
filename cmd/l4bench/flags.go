package main

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"strings"
	"syscall"

	"github.com/l4raw/l4raw/internal/cli"
)

func newFlagSet(cmd, synopsis string) *flag.FlagSet { return cli.NewFlagSet("l4bench", cmd, synopsis) }

// parseFlags parses args; when it returns done, the command must exit with
// code at once (help printed, or a one-line error). Positional arguments
// are refused unless allowArgs.
func parseFlags(e env, fs *flag.FlagSet, args []string, allowArgs bool) (code int, done bool) {
	return cli.Parse(e.stdout, e.stderr, fs, args, allowArgs)
}

// usageError prints one line naming the command and returns exitUsage.
func usageError(e env, fs *flag.FlagSet, format string, a ...any) int {
	return cli.Usage(e.stderr, fs, format, a...)
}

// failf prints one line naming the command and returns exitFail.
func failf(e env, fs *flag.FlagSet, format string, a ...any) int {
	return cli.Fail(e.stderr, fs, format, a...)
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

// sockOpts sets congestion control cc and, with noPort,
// IP_BIND_ADDRESS_NO_PORT on a socket (see cli.SockOpts).
func sockOpts(cc string, noPort bool) func(network, address string, c syscall.RawConn) error {
	return cli.SockOpts(cc, noPort)
}
