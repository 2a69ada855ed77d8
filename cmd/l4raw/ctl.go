package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/l4raw/l4raw/pkg/api"
	"github.com/l4raw/l4raw/pkg/forward"
	"github.com/l4raw/l4raw/pkg/packet"
)

const ctlUsage = `Usage: l4raw ctl [--api ADDR] [--json] COMMAND [ARGS]

Shows and changes a running l4raw through its API.

Commands:
  status                         version, uptime, connection table and every counter
  services                       services with their backends' health and connections
  backends [SERVICE]             backends: state, health, weight, connections, bytes
  add SERVICE ADDR [--weight N]  add a backend (weight 1 unless given)
  remove SERVICE ADDR            remove a backend
  drain SERVICE ADDR             no new connections; existing ones continue
  ready SERVICE ADDR             take new connections again
  maint SERVICE ADDR             no new connections and no health checks
  weight SERVICE ADDR N          set the weight, 0..65535 (0: no new connections)
  flows [--service S] [--backend IP:PORT] [--limit N] [--offset N]
                                 connections in the table, one page at a time
                                 (100 by default, at most 10000)
  reload                         reload the configuration

ADDR is a backend as in the configuration: IP:PORT, or IP for a backend
that takes the port the client connected to.

Flags (anywhere on the line):
  --api ADDR  the daemon's API, HOST:PORT (default 127.0.0.1:9478; the
              daemon's --api flag; loopback because the API can change the
              balancer)
  --json      print the API's JSON instead of tables

Exit codes: 0 done, 1 the daemon refused or could not be reached,
2 a wrong command or argument.
`

// ctl is one run of `l4raw ctl`. Its environment comes in as fields so
// tests can give it a fake daemon and a fixed clock.
type ctl struct {
	stdout, stderr io.Writer
	now            func() time.Time
	client         func(addr string) *api.Client

	addr    string
	json    bool
	command string
}

func runCtl(args []string, stdout, stderr io.Writer) int {
	c := &ctl{stdout: stdout, stderr: stderr, now: time.Now,
		client: func(addr string) *api.Client { return api.NewClient(addr) }}
	return c.run(args)
}

// ctlUsageError is a wrong command line: exit 2. A message that shows the
// command's usage itself gets no pointer to --help.
type ctlUsageError struct {
	msg       string
	showsHelp bool
}

func (e ctlUsageError) Error() string { return e.msg }

func badArg(format string, a ...any) error { return ctlUsageError{msg: fmt.Sprintf(format, a...)} }

func badCount(format string, a ...any) error {
	return ctlUsageError{msg: fmt.Sprintf(format, a...), showsHelp: true}
}

func (c *ctl) run(args []string) int {
	err := c.dispatch(args)
	var ue ctlUsageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		io.WriteString(c.stdout, ctlUsage)
		return exitOK
	case errors.As(err, &ue):
		see := " (see l4raw ctl --help)"
		if ue.showsHelp {
			see = ""
		}
		fmt.Fprintf(c.stderr, "l4raw ctl: %s%s\n", oneLine(ue.msg), see)
		return exitUsage
	case errors.Is(err, api.ErrUnreachable):
		hint := "is l4raw running with --api " + c.addr + "?"
		if c.addr == api.DefaultAddr {
			hint = "is l4raw running? it listens there unless started with --api off"
		}
		fmt.Fprintf(c.stderr, "l4raw ctl: %s (%s)\n", oneLine(err.Error()), hint)
		return exitFailure
	default:
		fmt.Fprintf(c.stderr, "l4raw ctl: %s\n", oneLine(err.Error()))
		return exitFailure
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// flagSet returns a FlagSet for the command with the global flags on it,
// so they may also follow the command.
func (c *ctl) flagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.addr, "api", c.addr, "")
	fs.BoolVar(&c.json, "json", c.json, "")
	return fs
}

// parse reads flags before, between and after the positional arguments
// and checks their number.
func parse(fs *flag.FlagSet, args []string, minArgs, maxArgs int, names string) ([]string, error) {
	var pos []string
	for {
		// A negative number is an argument (a wrong weight), not a flag.
		for len(args) > 0 && len(args[0]) > 1 && args[0][0] == '-' && args[0][1] >= '0' && args[0][1] <= '9' {
			pos = append(pos, args[0])
			args = args[1:]
		}
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, badArg("%s: %v", fs.Name(), err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	usage := strings.TrimSpace("l4raw ctl " + fs.Name() + " " + names)
	switch {
	case len(pos) < minArgs:
		missing := strings.Fields(names)[len(pos)]
		return nil, badCount("%s: missing %s (usage: %s)", fs.Name(), missing, usage)
	case len(pos) > maxArgs:
		return nil, badCount("%s: unexpected argument %q (usage: %s)", fs.Name(), pos[maxArgs], usage)
	}
	return pos, nil
}

func (c *ctl) dispatch(args []string) error {
	c.addr = api.DefaultAddr
	fs := c.flagSet("ctl")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return badArg("%v", err)
	}
	if fs.NArg() == 0 {
		return badArg("missing COMMAND")
	}
	c.command = fs.Arg(0)
	rest := fs.Args()[1:]
	ctx := context.Background()

	switch c.command {
	case "help":
		return flag.ErrHelp
	case "status":
		if _, err := parse(c.flagSet(c.command), rest, 0, 0, ""); err != nil {
			return err
		}
		cl, err := c.dial()
		if err != nil {
			return err
		}
		st, err := cl.Status(ctx)
		if err != nil {
			return err
		}
		return c.print(st, func(w io.Writer) { c.printStatus(w, st) })
	case "services":
		if _, err := parse(c.flagSet(c.command), rest, 0, 0, ""); err != nil {
			return err
		}
		cl, err := c.dial()
		if err != nil {
			return err
		}
		svcs, err := cl.Services(ctx)
		if err != nil {
			return err
		}
		return c.print(svcs, func(w io.Writer) { printServices(w, svcs) })
	case "backends":
		pos, err := parse(c.flagSet(c.command), rest, 0, 1, "[SERVICE]")
		if err != nil {
			return err
		}
		cl, err := c.dial()
		if err != nil {
			return err
		}
		var bes []api.BackendInfo
		if len(pos) == 1 {
			if bes, err = cl.Backends(ctx, pos[0]); err != nil {
				return err
			}
		} else {
			svcs, err := cl.Services(ctx)
			if err != nil {
				return err
			}
			for _, s := range svcs {
				bes = append(bes, s.Backends...)
			}
		}
		if bes == nil {
			bes = []api.BackendInfo{}
		}
		return c.print(bes, func(w io.Writer) { printBackends(w, bes) })
	case "add":
		fs := c.flagSet(c.command)
		weight := fs.String("weight", strconv.Itoa(api.DefaultWeight), "")
		return c.change(ctx, fs, rest, 2, "SERVICE ADDR [--weight N]", func(cl *api.Client, svc string, addr netip.AddrPort, _ []string) (api.BackendInfo, error) {
			w, err := weightArg("--weight", *weight)
			if err != nil {
				return api.BackendInfo{}, err
			}
			return cl.AddBackend(ctx, svc, addr, w)
		}, func(be api.BackendInfo) string { return "added; " + summary(be) })
	case "remove":
		return c.change(ctx, c.flagSet(c.command), rest, 2, "SERVICE ADDR", func(cl *api.Client, svc string, addr netip.AddrPort, _ []string) (api.BackendInfo, error) {
			return cl.RemoveBackend(ctx, svc, addr)
		}, func(be api.BackendInfo) string {
			return fmt.Sprintf("removed; it had %s and %d in all", plural(be.Active, "active connection"), be.Conns)
		})
	case api.StateDrain, api.StateReady, api.StateMaint:
		return c.change(ctx, c.flagSet(c.command), rest, 2, "SERVICE ADDR", func(cl *api.Client, svc string, addr netip.AddrPort, _ []string) (api.BackendInfo, error) {
			return cl.SetState(ctx, svc, addr, c.command)
		}, summary)
	case "weight":
		return c.change(ctx, c.flagSet(c.command), rest, 3, "SERVICE ADDR N", func(cl *api.Client, svc string, addr netip.AddrPort, pos []string) (api.BackendInfo, error) {
			w, err := weightArg("N", pos[2])
			if err != nil {
				return api.BackendInfo{}, err
			}
			return cl.SetWeight(ctx, svc, addr, w)
		}, summary)
	case "flows":
		return c.flows(ctx, rest)
	case "reload":
		if _, err := parse(c.flagSet(c.command), rest, 0, 0, ""); err != nil {
			return err
		}
		cl, err := c.dial()
		if err != nil {
			return err
		}
		st, err := cl.Reload(ctx)
		if err != nil {
			return err
		}
		return c.print(st, func(w io.Writer) {
			fmt.Fprintf(w, "reloaded: %s, %s in the table\n", plural(st.Services, "service"), plural(st.Conns, "connection"))
		})
	}
	return badArg("unknown command %q", c.command)
}

func (c *ctl) flows(ctx context.Context, args []string) error {
	fs := c.flagSet(c.command)
	service := fs.String("service", "", "")
	backend := fs.String("backend", "", "")
	limitS := fs.String("limit", strconv.Itoa(api.DefaultFlowLimit), "")
	offsetS := fs.String("offset", "0", "")
	if _, err := parse(fs, args, 0, 0, "[--service S] [--backend IP:PORT] [--limit N] [--offset N]"); err != nil {
		return err
	}
	f := api.FlowFilter{Service: *service}
	if *backend != "" {
		ap, err := netip.ParseAddrPort(*backend)
		if err != nil {
			return badArg("flows: --backend %q: want IP:PORT", *backend)
		}
		f.Backend = ap.String()
	}
	limit, err := strconv.Atoi(*limitS)
	if err != nil || limit < 1 || limit > api.MaxFlowLimit {
		return badArg("flows: --limit %q: want an integer 1..%d", *limitS, api.MaxFlowLimit)
	}
	offset, err := strconv.Atoi(*offsetS)
	if err != nil || offset < 0 {
		return badArg("flows: --offset %q: want an integer 0 or more", *offsetS)
	}
	cl, err := c.dial()
	if err != nil {
		return err
	}
	p, err := cl.Flows(ctx, f, offset, limit)
	if err != nil {
		return err
	}
	return c.print(p, func(w io.Writer) {
		printFlows(w, p)
		switch {
		case p.Total == 0:
			fmt.Fprintln(w, "no flows")
		case len(p.Flows) == 0:
			fmt.Fprintf(w, "no flows at offset %d (%d in all)\n", p.Offset, p.Total)
		case p.Next < 0:
			fmt.Fprintf(w, "flows %d-%d of %d\n", p.Offset+1, p.Offset+len(p.Flows), p.Total)
		default:
			next := "l4raw ctl flows"
			if f.Service != "" {
				next += " --service " + strconv.Quote(f.Service)
			}
			if f.Backend != "" {
				next += " --backend " + f.Backend
			}
			if limit != api.DefaultFlowLimit {
				next += " --limit " + strconv.Itoa(limit)
			}
			next += " --offset " + strconv.Itoa(p.Next)
			fmt.Fprintf(w, "flows %d-%d of %d; next page: %s\n", p.Offset+1, p.Offset+len(p.Flows), p.Total, next)
		}
	})
}

// dial checks --api and returns a client for it.
// change runs a command that changes one backend: n positional arguments
// (SERVICE ADDR ...), then call against the daemon, then one line saying
// what the backend is now.
func (c *ctl) change(ctx context.Context, fs *flag.FlagSet, rest []string, n int, syntax string,
	call func(cl *api.Client, svc string, addr netip.AddrPort, pos []string) (api.BackendInfo, error), say func(api.BackendInfo) string) error {
	pos, err := parse(fs, rest, n, n, syntax)
	if err != nil {
		return err
	}
	addr, err := backendArg(pos[1])
	if err != nil {
		return err
	}
	cl, err := c.dial()
	if err != nil {
		return err
	}
	be, err := call(cl, pos[0], addr, pos)
	if err != nil {
		return err
	}
	return c.print(be, func(w io.Writer) { fmt.Fprintf(w, "%s %s: %s\n", be.Service, be.Address, say(be)) })
}

func (c *ctl) dial() (*api.Client, error) {
	if !strings.Contains(c.addr, "://") {
		if _, port, err := net.SplitHostPort(c.addr); err != nil || port == "" {
			return nil, badArg("--api %q: want HOST:PORT", c.addr)
		}
	}
	return c.client(c.addr), nil
}

func backendArg(s string) (netip.AddrPort, error) {
	ap, err := api.ParseBackend(s)
	if err != nil {
		return netip.AddrPort{}, badArg("ADDR %q: %v", s, err)
	}
	return ap, nil
}

func weightArg(name, s string) (int, error) {
	w, err := strconv.Atoi(s)
	if err != nil || w < api.MinWeight || w > api.MaxWeight {
		return 0, badArg("weight %s %q: want an integer %d..%d", name, s, api.MinWeight, api.MaxWeight)
	}
	return w, nil
}

// print writes v as the API's JSON with --json, else the table.
func (c *ctl) print(v any, table func(io.Writer)) error {
	if c.json {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return fmt.Errorf("encode %s answer: %w", c.command, err)
		}
		_, err = c.stdout.Write(append(b, '\n'))
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

func (c *ctl) printStatus(w io.Writer, st api.Status) {
	fmt.Fprintf(w, "l4raw %s (commit %s)\n", st.Version, st.Commit)
	if !st.StartedAt.IsZero() {
		up := c.now().Sub(st.StartedAt).Round(time.Second)
		fmt.Fprintf(w, "started\t%s (up %s)\n", st.StartedAt.UTC().Format(time.RFC3339), up)
	}
	fmt.Fprintf(w, "services\t%d\n", st.Services)
	fmt.Fprintf(w, "connections\t%d of %d\n", st.Conns, st.ConnLimit)
	for _, name := range counterOrder(st.Counters) {
		fmt.Fprintf(w, "%s\t%d\n", name, st.Counters[name])
	}
}

// counterOrder lists counters in the order the daemon's counter dump
// prints them, then any others by name.
func counterOrder(m map[string]uint64) []string {
	known := []string{"rx_frames", "rx_bytes", "tx_frames", "tx_bytes", "conns_new", "conns_reopened",
		"conns_in_table", "conns_limit", "rst_sent", "nat_early_reuse"}
	for i := 0; i < forward.NumDrops; i++ {
		known = append(known, "drop_"+forward.DropName(i))
	}
	for r := packet.Reason(1); r < packet.NumReasons; r++ {
		known = append(known, "malformed_"+r.String())
	}
	known = append(known, "socket_truncated", "socket_kernel_drops", "socket_tx_errors")
	var out, rest []string
	for _, k := range known {
		if _, ok := m[k]; ok {
			out = append(out, k)
		}
	}
	for k := range m {
		if !slices.Contains(known, k) {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	return append(out, rest...)
}

func printServices(w io.Writer, svcs []api.ServiceInfo) {
	fmt.Fprintln(w, "NAME\tVIP\tPORTS\tMODE\tSCHEDULER\tBACKENDS\tUP\tACTIVE\tTOTAL")
	for _, s := range svcs {
		ports := make([]string, len(s.Ports))
		for i, p := range s.Ports {
			ports[i] = strconv.Itoa(int(p))
		}
		up := 0
		var active int64
		var total uint64
		for _, b := range s.Backends {
			if b.Health == api.HealthUp {
				up++
			}
			active += b.Active
			total += b.Conns
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\n", s.Name, s.VIP, strings.Join(ports, ","), s.Mode, s.Scheduler, len(s.Backends), up, active, total)
	}
}

// printBackends shows what ipvsadm -L and HAProxy's stats page show for a
// real server: state, health, weight, active and total connections, bytes
// each way, and the last check.
func printBackends(w io.Writer, bes []api.BackendInfo) {
	fmt.Fprintln(w, "SERVICE\tBACKEND\tSTATE\tHEALTH\tWEIGHT\tACTIVE\tTOTAL\tIN\tOUT\tNAT\tCHECK")
	for _, b := range bes {
		check := "-"
		if b.Health != api.HealthUnknown {
			check = latency(b.CheckLatency)
			if b.HealthReason != "" {
				check += " " + b.HealthReason
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%d\t%s\n", b.Service, b.Address, b.State, b.Health,
			b.Weight, b.Active, b.Conns, humanBytes(b.BytesIn), humanBytes(b.BytesOut), b.NATPorts, check)
	}
}

func printFlows(w io.Writer, p api.FlowPage) {
	if len(p.Flows) == 0 {
		return
	}
	fmt.Fprintln(w, "SERVICE\tCLIENT\tVIP\tBACKEND\tSNAT\tSTATE\tIDLE")
	for _, f := range p.Flows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Service, f.Client, f.VIP, f.Backend, cmp.Or(f.SNAT, "-"), f.State, idle(f.IdleSeconds))
	}
}

// summary is a backend after a change, in one line.
func summary(b api.BackendInfo) string {
	return fmt.Sprintf("%s, weight %d, health %s, %s", b.State, b.Weight, b.Health, plural(b.Active, "active connection"))
}

func plural[N int | int64](n N, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// humanBytes writes n in IEC units with one decimal, as ipvsadm --stats
// and HAProxy's stats page round: 0 B, 512 B, 46.9 KiB, 3.0 GiB.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 5 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[i])
}

func latency(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	if d < time.Second {
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

func idle(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}
