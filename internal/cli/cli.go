// Package cli holds what the project's small tools (l4echo, l4bench) share:
// flag sets that report every problem as one line and exit code 2, and the
// socket option that sets a TCP congestion control per socket.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"syscall"
)

// Exit codes of the tools.
const (
	ExitOK    = 0
	ExitFail  = 1 // the operation failed
	ExitUsage = 2 // a wrong flag or argument
)

// NewFlagSet returns a flag set for "prog cmd" that reports nothing itself:
// Parse turns every problem into one line on stderr and ExitUsage.
func NewFlagSet(prog, cmd, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(prog+" "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s %s %s\n", prog, cmd, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// Parse parses args; when it returns done, the command must exit with code
// at once (help printed on stdout, or a one-line error on stderr).
// Positional arguments are refused unless allowArgs.
func Parse(stdout, stderr io.Writer, fs *flag.FlagSet, args []string, allowArgs bool) (code int, done bool) {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fs.Usage()
		return ExitOK, true
	}
	if err != nil {
		return Usage(stderr, fs, "%v", err), true
	}
	if !allowArgs && fs.NArg() > 0 {
		return Usage(stderr, fs, "unexpected argument %q", fs.Arg(0)), true
	}
	return ExitOK, false
}

// Usage prints one line naming the command and returns ExitUsage.
func Usage(stderr io.Writer, fs *flag.FlagSet, format string, a ...any) int {
	fmt.Fprintf(stderr, "%s: %s\n", fs.Name(), fmt.Sprintf(format, a...))
	return ExitUsage
}

// Fail prints one line naming the command and returns ExitFail.
func Fail(stderr io.Writer, fs *flag.FlagSet, format string, a ...any) int {
	fmt.Fprintf(stderr, "%s: %s\n", fs.Name(), fmt.Sprintf(format, a...))
	return ExitFail
}

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT (linux/in.h), which the
// syscall package does not name.
const ipBindAddressNoPort = 24

// SockOpts returns a net.Dialer/ListenConfig Control function that sets TCP
// congestion control cc (empty: the namespace default) and, with noPort,
// IP_BIND_ADDRESS_NO_PORT; nil when there is nothing to set. Per socket, a
// process with CAP_NET_ADMIN may pick any available algorithm, while a
// network namespace's default can only be one of the host-wide
// net.ipv4.tcp_allowed_congestion_control. Accepted sockets inherit the
// algorithm from their listener.
//
// IP_BIND_ADDRESS_NO_PORT defers a bound client's port choice from bind(2)
// to connect(2): the port is then unique per 4-tuple, not per local
// address, as for an unbound socket (ip(7)).
func SockOpts(cc string, noPort bool) func(network, address string, c syscall.RawConn) error {
	if cc == "" && !noPort {
		return nil
	}
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if cc != "" {
				if err := syscall.SetsockoptString(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CONGESTION, cc); err != nil {
					serr = fmt.Errorf("set tcp congestion control %q: %w", cc, err)
					return
				}
			}
			if noPort {
				if err := syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1); err != nil {
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

// Command is one subcommand of a tool.
type Command struct {
	Name string
	Run  func(args []string) int
}

// Dispatch runs the subcommand args[0] names, prints usage for help, and
// answers anything else with one line and ExitUsage.
func Dispatch(stdout, stderr io.Writer, prog, usage string, args []string, cmds []Command) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return ExitUsage
	}
	var names []string
	for _, c := range cmds {
		if c.Name == args[0] {
			return c.Run(args[1:])
		}
		names = append(names, c.Name)
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return ExitOK
	}
	fmt.Fprintf(stderr, "%s: unknown command %q (%s)\n", prog, args[0], strings.Join(names, ", "))
	return ExitUsage
}
