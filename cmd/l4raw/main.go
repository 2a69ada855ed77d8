// Command l4raw is a layer-4 TCP load balancer that works on raw packets.
//
//	sudo l4raw --vip 192.168.1.200:80 --backend 192.168.1.11:8080 --backend 192.168.1.12:8080
//
// This file only reads flags, the environment and files; the work is done by
// the packages under pkg/, wired together in daemon.go.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/l4raw/l4raw/pkg/config"
)

// Stamped at build time by the Makefile (-ldflags -X).
var (
	version = "dev"
	commit  = "unknown"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // a runtime failure: the kernel refused something, a socket broke
	exitUsage   = 2 // a wrong flag, config value or environment the user must fix
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// usageError is a mistake of the user's: one line, exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "check" {
		return runCheck(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "ctl" {
		return runCtl(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("l4raw", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are printed below, on one line
	fl := config.DefaultFlags()
	fl.Register(fs)
	cfgFile := fs.String("config", "", "YAML file with one or more services (instead of --vip/--backend)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	var pc pcapFlags
	fs.StringVar(&pc.file, "pcap", "", "write the frames l4raw handles, as they arrive and as they leave, to this pcapng `FILE` (debugging)")
	fs.StringVar(&pc.match, "pcap-match", "", "with --pcap, only frames to or from these comma-separated `ADDRS` (client, VIP or backend)")
	fs.IntVar(&pc.snap, "pcap-snaplen", 0, "with --pcap, keep at most `N` bytes of each frame (0: all)")
	pprofAddr := fs.String("pprof", "", "serve Go's profiles on this loopback `IP:PORT` (go tool pprof http://IP:PORT/debug/pprof/profile)")
	fs.Usage = func() { usage(stdout, fs) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) { // fs.Usage has printed the help
			return exitOK
		}
		fmt.Fprintf(stderr, "l4raw: %v (see l4raw --help)\n", err)
		return exitUsage
	}
	if *showVersion {
		fmt.Fprintf(stdout, "l4raw %s (commit %s)\n", version, commit)
		return exitOK
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "l4raw: unexpected argument %q (see l4raw --help)\n", fs.Arg(0))
		return exitUsage
	}
	spec, err := loadSpec(fs, fl, *cfgFile)
	if err != nil {
		fmt.Fprintf(stderr, "l4raw: %v\n", err)
		return exitUsage
	}
	if err := pc.check(); err != nil {
		fmt.Fprintf(stderr, "l4raw: %v\n", err)
		return exitUsage
	}
	if err := checkPprof(*pprofAddr); err != nil {
		fmt.Fprintf(stderr, "l4raw: %v\n", err)
		return exitUsage
	}
	log := newLogger(stderr, spec)
	d := newDaemon(spec, log, stderr, *cfgFile)
	d.pcap = pc
	d.pprofAddr = *pprofAddr
	if err := d.run(); err != nil {
		fmt.Fprintf(stderr, "l4raw: %v\n", err)
		var ue usageError
		if errors.As(err, &ue) {
			return exitUsage
		}
		return exitFailure
	}
	return exitOK
}

// loadSpec builds the Spec from --config or from the single-service flags.
func loadSpec(fs *flag.FlagSet, fl config.Flags, file string) (config.Spec, error) {
	if file == "" {
		return config.FromFlags(fl)
	}
	// The file holds everything; only the log settings may be overridden.
	var conflict []string
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "config", "log-level", "log-format", "pcap", "pcap-match", "pcap-snaplen", "pprof":
		default:
			conflict = append(conflict, "--"+f.Name)
		}
	})
	if len(conflict) > 0 {
		return config.Spec{}, fmt.Errorf("--config %q: %s: set it in the file instead", file, strings.Join(conflict, ", "))
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return config.Spec{}, fmt.Errorf("--config: %w", err)
	}
	spec, err := config.Parse(file, data)
	if err != nil {
		return spec, err
	}
	var lerr error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "log-level":
			if err := spec.LogLevel.UnmarshalText([]byte(f.Value.String())); err != nil {
				lerr = fmt.Errorf("--log-level %q: want debug, info, warn or error", f.Value.String())
			}
		case "log-format":
			if v := f.Value.String(); v == "text" || v == "json" {
				spec.LogFormat = v
			} else {
				lerr = fmt.Errorf("--log-format %q: want text or json", v)
			}
		}
	})
	return spec, lerr
}

func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("l4raw check", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	file := fs.String("config", "", "YAML file to validate")
	if err := fs.Parse(args); err != nil || *file == "" {
		fmt.Fprintln(stderr, "l4raw check: usage: l4raw check --config FILE")
		return exitUsage
	}
	data, err := os.ReadFile(*file)
	if err != nil {
		fmt.Fprintf(stderr, "l4raw check: %v\n", err)
		return exitUsage
	}
	spec, err := config.Parse(*file, data)
	if err != nil {
		fmt.Fprintf(stderr, "l4raw check: %v\n", err)
		return exitUsage
	}
	n := 0
	for _, s := range spec.Services {
		n += len(s.Ports)
	}
	fmt.Fprintf(stdout, "%s: ok (%d services, %d service ports)\n", *file, len(spec.Services), n)
	return exitOK
}

func newLogger(w io.Writer, s config.Spec) *slog.Logger {
	opts := &slog.HandlerOptions{Level: s.LogLevel}
	if s.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, `l4raw %s: a layer-4 TCP load balancer on raw packets

Usage:
  l4raw --vip IP:PORT --backend IP[:PORT] [--backend ...] [flags]
  l4raw --config FILE [--log-level L] [--pcap FILE]
  l4raw check --config FILE
  l4raw ctl [--api ADDR] [--json] status|services|backends|add|remove|drain|ready|maint|weight|flows|reload

Clients that connect to the VIP are spread over the healthy backends. The
VIP is an address of this host, or a free address of a connected subnet
that l4raw claims with ARP (--vip-arp).

Flags:
`, version)
	fs.VisitAll(func(f *flag.Flag) {
		name, text := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" {
			text += " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(w, "%s\n      %s\n", line, text)
	})
	fmt.Fprint(w, `
Signals: SIGINT/SIGTERM stop (removing the guard table), SIGHUP reloads the
config file, SIGUSR1 prints counters.
Exit codes: 0 done, 1 runtime failure, 2 bad flag, config or environment.
`)
}
