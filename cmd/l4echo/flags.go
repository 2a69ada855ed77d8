package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/l4raw/l4raw/internal/cli"
)

func newFlagSet(cmd, synopsis string) *flag.FlagSet { return cli.NewFlagSet("l4echo", cmd, synopsis) }

// parseFlags parses args; when it returns done, the command must exit with
// code at once (help printed, or a one-line error).
func parseFlags(e env, fs *flag.FlagSet, args []string) (code int, done bool) {
	return cli.Parse(e.stdout, e.stderr, fs, args, false)
}

// usageError prints one line naming the command and returns exitUsage.
func usageError(e env, fs *flag.FlagSet, format string, a ...any) int {
	return cli.Usage(e.stderr, fs, format, a...)
}

// sizeFlag is a byte count with an optional unit: decimal (k, M, G, T and
// kB, MB, GB, TB) or binary (KiB, MiB, GiB, TiB), case-insensitive.
type sizeFlag uint64

// unitSize returns the multiplier of a size unit.
func unitSize(unit string) (uint64, bool) {
	switch strings.ToLower(unit) {
	case "", "b":
		return 1, true
	case "k", "kb":
		return 1e3, true
	case "kib":
		return 1 << 10, true
	case "m", "mb":
		return 1e6, true
	case "mib":
		return 1 << 20, true
	case "g", "gb":
		return 1e9, true
	case "gib":
		return 1 << 30, true
	case "t", "tb":
		return 1e12, true
	case "tib":
		return 1 << 40, true
	}
	return 0, false
}

// maxSize bounds transfers at 1 TiB: far beyond any test, and small enough
// that no multiplication below overflows.
const maxSize = 1 << 40

func parseSize(s string) (uint64, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, errors.New("not a size (want e.g. 1048576, 64KiB, 256MiB, 1G)")
	}
	n, err := strconv.ParseUint(s[:i], 10, 64)
	if err != nil || n > maxSize {
		return 0, errors.New("size above 1TiB")
	}
	unit, ok := unitSize(s[i:])
	if !ok {
		return 0, fmt.Errorf("unknown unit %q", s[i:])
	}
	if n > maxSize/unit {
		return 0, errors.New("size above 1TiB")
	}
	return n * unit, nil
}

func (f *sizeFlag) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*f = sizeFlag(n)
	return nil
}

func (f *sizeFlag) String() string { return strconv.FormatUint(uint64(*f), 10) }

// parseHTTPURL accepts http://host[:port][/path] and returns the URL with an
// explicit port, so that it can be dialed as is.
func parseHTTPURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("is required")
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	if u.Scheme != "http" {
		return nil, errors.New("scheme must be http")
	}
	if u.Hostname() == "" {
		return nil, errors.New("no host")
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), "80")
	} else if p, err := strconv.ParseUint(u.Port(), 10, 16); err != nil || p == 0 {
		return nil, fmt.Errorf("bad port %q", u.Port())
	}
	return u, nil
}
