package config

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/l4raw/l4raw/pkg/sched"
)

// Flag names, shared by Register and the messages of FromFlags.
const (
	flagVIP         = "vip"
	flagBackend     = "backend"
	flagName        = "name"
	flagMode        = "mode"
	flagScheduler   = "scheduler"
	flagMaintFlows  = "maint-flows"
	flagAPI         = "api"
	flagVIPARP      = "vip-arp"
	flagIface       = "iface"
	flagSNAT        = "snat-ip"
	flagNATPorts    = "nat-ports"
	flagMaxConns    = "max-conns"
	flagWorkers     = "workers"
	flagNoGuard     = "no-guard"
	flagLogLevel    = "log-level"
	flagLogFormat   = "log-format"
	flagHealthType  = "health-type"
	flagHealthInter = "health-interval"
	flagHealthTime  = "health-timeout"
	flagHealthRise  = "health-rise"
	flagHealthFall  = "health-fall"
	flagHealthPort  = "health-port"
	flagHealthPass  = "health-passive"
	flagHealthPath  = "health-path"
	flagHealthStat  = "health-status"
	flagHealthHost  = "health-host"
	flagHealthSend  = "health-send"
	flagHealthExp   = "health-expect"
	flagTimeoutSYN  = "timeout-syn"
	flagTimeoutEst  = "timeout-established"
	flagTimeoutFIN  = "timeout-fin"
	flagTimeoutTW   = "timeout-time-wait"
	flagTimeoutClos = "timeout-close"
)

// Flags holds raw command-line values for a single-service setup. The
// comment on each field names its flag. Start from DefaultFlags: FromFlags
// takes every value as given, so a zero MaxConns is an error, not a default.
type Flags struct {
	VIP        string   // --vip IP:PORT (required)
	Backends   []string // --backend IP[:PORT], repeatable or comma-separated; the port defaults to the VIP's
	Name       string   // --name; "" = VIP:PORT
	Mode       string   // --mode fullnat|dnat
	Scheduler  string   // --scheduler rr|wrr|lc|random|sh|maglev
	MaintFlows string   // --maint-flows keep|reset
	Interfaces []string // --iface, repeatable or comma-separated; empty = auto
	SNAT       []string // --snat-ip, repeatable or comma-separated; empty = auto
	NATPorts   string   // --nat-ports LO-HI|auto
	MaxConns   int      // --max-conns
	Workers    int      // --workers; 0 = one per CPU
	// Timeouts: --timeout-syn, --timeout-established, --timeout-fin,
	// --timeout-time-wait, --timeout-close.
	Timeouts Timeouts
	// Health: --health-type, --health-interval, --health-timeout,
	// --health-rise, --health-fall, --health-port, --health-passive; for
	// http --health-path,
	// --health-status, --health-host; for send-expect --health-send,
	// --health-expect. Send and Expect hold the bytes themselves: Register
	// decodes the flags' escapes (\r, \n, \t, \\, \xHH).
	Health    Health
	NoGuard   bool   // --no-guard
	LogLevel  string // --log-level debug|info|warn|error
	LogFormat string // --log-format text|json
	API       string // --api IP:PORT|off
	VIPARP    string // --vip-arp auto|on|off
}

// DefaultFlags returns the values flags have when not given.
func DefaultFlags() Flags {
	d := Default()
	return Flags{
		Mode:       ModeFullNAT.String(),
		Scheduler:  "rr",
		MaintFlows: MaintFlowsKeep,
		NATPorts:   "auto",
		MaxConns:   d.MaxConns,
		Workers:    d.Workers,
		Timeouts:   d.Timeouts,
		Health:     d.Health,
		LogLevel:   "info",
		LogFormat:  d.LogFormat,
		API:        d.API,
		VIPARP:     VIPARPAuto,
	}
}

// Register defines the flags on fs, with f's current values as defaults
// (use DefaultFlags), so that the names in FromFlags' messages and in
// --help agree. It only defines them; the caller parses.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.VIP, flagVIP, f.VIP, "virtual address clients connect to, IP:PORT")
	fs.Func(flagBackend, "backend IP[:PORT] (port defaults to the VIP's); repeatable, comma-separated", appendList(&f.Backends))
	fs.StringVar(&f.Name, flagName, f.Name, "service name (default VIP:PORT)")
	fs.StringVar(&f.Mode, flagMode, f.Mode, "forwarding mode: fullnat (rewrite source and destination) or dnat (destination only)")
	fs.StringVar(&f.Scheduler, flagScheduler, f.Scheduler, "scheduler: "+orList(sched.Names())+
		" (round robin, weighted round robin, least connections, two random choices, source hash, Maglev hash)")
	fs.StringVar(&f.MaintFlows, flagMaintFlows, f.MaintFlows, "connections of a backend put in maint: keep (they continue to their end) or reset (answered with RSTs)")
	fs.Func(flagIface, "interface to capture on; repeatable, comma-separated (default: from routes)", appendList(&f.Interfaces))
	fs.Func(flagSNAT, "source address toward backends in fullnat mode; repeatable, comma-separated (default: from routes)", appendList(&f.SNAT))
	fs.StringVar(&f.NATPorts, flagNATPorts, f.NATPorts, "NAT source ports LO-HI, or auto (outside the kernel's ephemeral range)")
	fs.IntVar(&f.MaxConns, flagMaxConns, f.MaxConns, "connection table capacity")
	fs.IntVar(&f.Workers, flagWorkers, f.Workers, "packet workers (0 = one per CPU)")
	fs.DurationVar(&f.Timeouts.SYN, flagTimeoutSYN, f.Timeouts.SYN, "idle timeout while the handshake is unfinished")
	fs.DurationVar(&f.Timeouts.Established, flagTimeoutEst, f.Timeouts.Established, "idle timeout of an established connection")
	fs.DurationVar(&f.Timeouts.FIN, flagTimeoutFIN, f.Timeouts.FIN, "idle timeout after one side closed")
	fs.DurationVar(&f.Timeouts.TimeWait, flagTimeoutTW, f.Timeouts.TimeWait, "linger after both sides closed")
	fs.DurationVar(&f.Timeouts.Close, flagTimeoutClos, f.Timeouts.Close, "linger after a reset")
	fs.StringVar(&f.Health.Type, flagHealthType, f.Health.Type, "health check: tcp (connect), http (GET, expect a status) or send-expect (send a string, expect a reply prefix)")
	fs.DurationVar(&f.Health.Interval, flagHealthInter, f.Health.Interval, "time between two checks of a backend")
	fs.DurationVar(&f.Health.Timeout, flagHealthTime, f.Health.Timeout, "time limit of one check")
	fs.IntVar(&f.Health.Rise, flagHealthRise, f.Health.Rise, "successes that bring a backend up")
	fs.IntVar(&f.Health.Fall, flagHealthFall, f.Health.Fall, "failures that take a backend down")
	fs.Var((*portFlag)(&f.Health.Port), flagHealthPort, "port to check (0 = the backend's port)")
	fs.IntVar(&f.Health.Passive, flagHealthPass, f.Health.Passive, "passive check: failed client connections to a backend within one second (refused, or SYN retransmitted) that count as one failed check (0 = off)")
	fs.StringVar(&f.Health.Path, flagHealthPath, f.Health.Path, "http check: request path (default /)")
	fs.IntVar(&f.Health.Status, flagHealthStat, f.Health.Status, "http check: status that means healthy (default 200)")
	fs.StringVar(&f.Health.Host, flagHealthHost, f.Health.Host, "http check: Host header (default the backend's address)")
	fs.Var((*escapedFlag)(&f.Health.Send), flagHealthSend, `send-expect check: string to send, with \r \n \t \\ \xHH escapes (default: send nothing, read the banner)`)
	fs.Var((*escapedFlag)(&f.Health.Expect), flagHealthExp, `send-expect check: prefix the reply must start with, escapes as for --health-send`)
	fs.BoolVar(&f.NoGuard, flagNoGuard, f.NoGuard, "do not install the rules that keep the kernel from answering for the VIP")
	fs.StringVar(&f.LogLevel, flagLogLevel, f.LogLevel, "log level: debug, info, warn or error")
	fs.StringVar(&f.LogFormat, flagLogFormat, f.LogFormat, "log format: text or json")
	fs.StringVar(&f.API, flagAPI, f.API, "runtime API address (HTTP/JSON and /metrics; no authentication: keep it on loopback) or off")
	fs.StringVar(&f.VIPARP, flagVIPARP, f.VIPARP, "answer ARP for the VIP: auto (when it is a free address of a connected subnet), on, or off (the VIP must be a local address)")
}

func appendList(dst *[]string) func(string) error {
	return func(s string) error {
		*dst = append(*dst, splitList([]string{s})...)
		return nil
	}
}

// portFlag is a flag.Value for a uint16 port (0 allowed).
type portFlag uint16

func (p *portFlag) String() string { return strconv.Itoa(int(*p)) }

func (p *portFlag) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return errors.New(msgInvalidPort)
	}
	*p = portFlag(n)
	return nil
}

// escapedFlag is a flag.Value for a string given with the escapes a YAML
// double-quoted string has for control bytes (\r, \n, \t, \0, \\, \",
// \xHH), so that `--health-send 'HEALTH CHECK\r\n'` means what the same
// text in the file means.
type escapedFlag string

func (e *escapedFlag) String() string { return escape(string(*e)) }

func (e *escapedFlag) Set(s string) error {
	v, err := unescape(s)
	if err != nil {
		return err
	}
	*e = escapedFlag(v)
	return nil
}

// unescape decodes the escapes escapedFlag accepts. Other backslashes are
// errors, so that a typo never sends a literal backslash.
func unescape(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b = append(b, s[i])
			continue
		}
		if i+1 == len(s) {
			return "", errors.New(`trailing \ (write \\ for a backslash)`)
		}
		i++
		switch c := s[i]; c {
		case 'r':
			b = append(b, '\r')
		case 'n':
			b = append(b, '\n')
		case 't':
			b = append(b, '\t')
		case '0':
			b = append(b, 0)
		case '\\', '"':
			b = append(b, c)
		case 'x':
			if i+2 >= len(s) {
				return "", errors.New(`\x needs two hex digits`)
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", errors.New(`\x needs two hex digits`)
			}
			b = append(b, byte(v))
			i += 2
		default:
			what := `\` + string(rune(c))
			if c <= ' ' || c >= 0x7f {
				// Keep the message on one line and readable.
				what = fmt.Sprintf(`\ before byte 0x%02x`, c)
			}
			return "", fmt.Errorf(`unknown escape %s (want \r, \n, \t, \0, \\, \" or \xHH)`, what)
		}
	}
	return string(b), nil
}

// escape writes s the way unescape reads it.
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\\':
			b.WriteString(`\\`)
		case c < ' ' || c >= 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// splitList splits every element on commas, so repeated flags and comma
// lists mean the same.
func splitList(in []string) []string {
	var out []string
	for _, s := range in {
		for _, part := range strings.Split(s, ",") {
			out = append(out, strings.TrimSpace(part))
		}
	}
	return out
}

// FromFlags builds and validates a one-service Spec from flag values.
// Errors name the flag and its value:
//
//	config: --backend "198.18.0.1:99999": invalid port
func FromFlags(f Flags) (Spec, error) {
	l := flagLocator{}
	s, p := l.spec(f)
	if p == nil {
		p = s.validate()
	}
	if p != nil {
		return Spec{}, errorFor(l, p)
	}
	return s, nil
}

type flagLoc struct{ flag, raw string }

// flagLocator maps field paths to the flags they came from.
type flagLocator map[string]flagLoc

func (l flagLocator) set(path, flag, raw string) { l[path] = flagLoc{flag: "--" + flag, raw: raw} }

func (l flagLocator) lookup(path string) (flagLoc, bool) {
	for p := path; p != ""; p = parentPath(p) {
		if fl, ok := l[p]; ok {
			return fl, p == path
		}
	}
	return flagLoc{flag: path}, false
}

func (l flagLocator) where(p *problem) string {
	fl, exact := l.lookup(p.path)
	if !p.hasValue {
		return fl.flag
	}
	v := p.value
	if exact && !p.computed && fl.raw != "" {
		v = fl.raw
	}
	return fl.flag + " " + quote(v)
}

func (l flagLocator) ref(path string) string {
	fl, _ := l.lookup(path)
	if fl.raw == "" {
		return fl.flag
	}
	return fl.flag + " " + quote(fl.raw)
}

func (l flagLocator) spec(f Flags) (Spec, *problem) {
	s := Default()
	s.MaxConns, s.Workers, s.Timeouts, s.Guard = f.MaxConns, f.Workers, f.Timeouts, !f.NoGuard
	s.Health = f.Health
	s.LogFormat = f.LogFormat
	s.API = f.API
	s.VIPARP = f.VIPARP

	l.set("max_conns", flagMaxConns, strconv.Itoa(f.MaxConns))
	l.set("workers", flagWorkers, strconv.Itoa(f.Workers))
	l.set("log.format", flagLogFormat, f.LogFormat)
	l.set("api", flagAPI, f.API)
	l.set("vip_arp", flagVIPARP, f.VIPARP)
	for _, t := range []struct {
		path, flag string
		v          fmt.Stringer
	}{
		{"timeouts.syn", flagTimeoutSYN, f.Timeouts.SYN},
		{"timeouts.established", flagTimeoutEst, f.Timeouts.Established},
		{"timeouts.fin", flagTimeoutFIN, f.Timeouts.FIN},
		{"timeouts.time_wait", flagTimeoutTW, f.Timeouts.TimeWait},
		{"timeouts.close", flagTimeoutClos, f.Timeouts.Close},
	} {
		l.set(t.path, t.flag, t.v.String())
	}
	for _, prefix := range []string{"health", "services[0].health"} {
		l.set(prefix, flagHealthInter, "")
		l.set(prefix+".type", flagHealthType, f.Health.Type)
		l.set(prefix+".interval", flagHealthInter, f.Health.Interval.String())
		l.set(prefix+".timeout", flagHealthTime, f.Health.Timeout.String())
		l.set(prefix+".rise", flagHealthRise, strconv.Itoa(f.Health.Rise))
		l.set(prefix+".fall", flagHealthFall, strconv.Itoa(f.Health.Fall))
		l.set(prefix+".port", flagHealthPort, strconv.Itoa(int(f.Health.Port)))
		l.set(prefix+".passive", flagHealthPass, strconv.Itoa(f.Health.Passive))
		l.set(prefix+".path", flagHealthPath, f.Health.Path)
		l.set(prefix+".status", flagHealthStat, strconv.Itoa(f.Health.Status))
		l.set(prefix+".host", flagHealthHost, f.Health.Host)
		l.set(prefix+".send", flagHealthSend, f.Health.Send)
		l.set(prefix+".expect", flagHealthExp, f.Health.Expect)
	}

	for i, name := range splitList(f.Interfaces) {
		path := index("interfaces", i)
		l.set(path, flagIface, name)
		s.Interfaces = append(s.Interfaces, name)
	}
	for i, text := range splitList(f.SNAT) {
		path := index("snat", i)
		l.set(path, flagSNAT, text)
		a, _, hasPort, msg := parseHostPort(text)
		if msg == "" && hasPort {
			msg = "port not allowed here"
		}
		if msg != "" {
			return s, bad(path, text, msg)
		}
		s.SNAT = append(s.SNAT, a)
	}
	l.set("nat_ports", flagNATPorts, f.NATPorts)
	if f.NATPorts != "" {
		r, ok := parsePortRange(f.NATPorts)
		if !ok {
			return s, bad("nat_ports", f.NATPorts, msgBadPortRange)
		}
		s.NATPorts = r
	}
	l.set("log.level", flagLogLevel, f.LogLevel)
	if f.LogLevel != "" {
		lvl, ok := parseLevel(f.LogLevel)
		if !ok {
			return s, bad("log.level", f.LogLevel, "unknown log level (want debug, info, warn or error)")
		}
		s.LogLevel = lvl
	}

	svc, p := l.service(f)
	if p != nil {
		return s, p
	}
	s.Services = []Service{svc}
	return s, nil
}

func (l flagLocator) service(f Flags) (Service, *problem) {
	svc := Service{Name: f.Name, Scheduler: f.Scheduler, MaintFlows: f.MaintFlows, Health: f.Health}
	for _, path := range []string{"services", "services[0]", "services[0].vip", "services[0].ports", "services[0].ports[0]"} {
		l.set(path, flagVIP, f.VIP)
	}
	l.set("services[0].name", flagName, f.Name)
	l.set("services[0].mode", flagMode, f.Mode)
	l.set("services[0].scheduler", flagScheduler, f.Scheduler)
	l.set("services[0].maint_flows", flagMaintFlows, f.MaintFlows)
	l.set("services[0].backends", flagBackend, "")

	if f.VIP == "" {
		return svc, missing("services[0].vip", "required (IP:PORT)")
	}
	a, port, hasPort, msg := parseHostPort(f.VIP)
	if msg == "" && !hasPort {
		msg = "port required (IP:PORT)"
	}
	if msg != "" {
		return svc, bad("services[0].vip", f.VIP, msg)
	}
	svc.VIP, svc.Ports = a, []uint16{port}

	if f.Mode != "" {
		m, ok := lookupMode(f.Mode)
		if !ok {
			return svc, bad("services[0].mode", f.Mode, msgUnknownMode)
		}
		svc.Mode = m
	}
	for j, text := range splitList(f.Backends) {
		path := index("services[0].backends", j)
		l.set(path, flagBackend, text)
		ba, bport, _, msg := parseHostPort(text)
		if msg != "" {
			return svc, bad(path, text, msg)
		}
		svc.Backends = append(svc.Backends, Backend{Addr: netip.AddrPortFrom(ba, bport), Weight: 1})
	}
	return svc, nil
}
