package config

import (
	"bytes"
	"flag"
	"io"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestFromFlags(t *testing.T) {
	base := func() Flags {
		f := DefaultFlags()
		f.VIP = "198.18.0.100:80"
		f.Backends = []string{"198.18.0.21", "198.18.0.22:8080"}
		return f
	}
	tests := []struct {
		name string
		edit func(f *Flags)
		want string
	}{
		{"valid", func(*Flags) {}, ""},
		{"comma list", func(f *Flags) { f.Backends = []string{"198.18.0.21, 198.18.0.22:8080"} }, ""},
		{"no vip", func(f *Flags) { f.VIP = "" }, `config: --vip: required (IP:PORT)`},
		{"vip no port", func(f *Flags) { f.VIP = "198.18.0.100" }, `config: --vip "198.18.0.100": port required (IP:PORT)`},
		{"vip bad port", func(f *Flags) { f.VIP = "198.18.0.100:0" }, `config: --vip "198.18.0.100:0": invalid port`},
		{"vip bad address", func(f *Flags) { f.VIP = "example.com:80" }, `config: --vip "example.com:80": invalid address`},
		{"vip ipv6", func(f *Flags) { f.VIP = "[2001:db8::1]:80" }, `config: --vip "[2001:db8::1]:80": IPv6 not supported yet`},
		{"vip broadcast", func(f *Flags) { f.VIP = "255.255.255.255:80" }, `config: --vip "255.255.255.255:80": broadcast address not allowed`},
		{"no backend", func(f *Flags) { f.Backends = nil }, `config: --backend: at least one backend required`},
		{"backend port", func(f *Flags) { f.Backends = []string{"198.18.0.1:99999"} }, `config: --backend "198.18.0.1:99999": invalid port`},
		{"backend address", func(f *Flags) { f.Backends = []string{"198.18.0.21", "198.18.0.300"} }, `config: --backend "198.18.0.300": invalid address`},
		{"backend empty", func(f *Flags) { f.Backends = []string{"198.18.0.21,"} }, `config: --backend "": invalid address`},
		{"backend duplicate", func(f *Flags) { f.Backends = []string{"198.18.0.21", "198.18.0.21:80"} }, `config: --backend "198.18.0.21:80": duplicate of --backend "198.18.0.21"`},
		{"backend is vip", func(f *Flags) { f.Backends = []string{"198.18.0.100"} }, `config: --backend "198.18.0.100": backend is the service address itself (a forwarding loop)`},
		{"mode", func(f *Flags) { f.Mode = "dsr" }, `config: --mode "dsr": unknown mode (want fullnat or dnat)`},
		{"scheduler sh", func(f *Flags) { f.Scheduler = "sh" }, ""},
		{"scheduler maglev", func(f *Flags) { f.Scheduler = "maglev" }, ""},
		{"scheduler empty", func(f *Flags) { f.Scheduler = "" }, ""},
		{"scheduler", func(f *Flags) { f.Scheduler = "fair" }, `config: --scheduler "fair": unknown scheduler (want rr, wrr, lc, random, sh or maglev)`},
		{"maint flows reset", func(f *Flags) { f.MaintFlows = "reset" }, ""},
		{"maint flows empty", func(f *Flags) { f.MaintFlows = "" }, ""},
		{"maint flows", func(f *Flags) { f.MaintFlows = "rst" }, `config: --maint-flows "rst": unknown maint flows policy (want keep or reset)`},
		{"api off", func(f *Flags) { f.API = "off" }, ""},
		{"api ipv6", func(f *Flags) { f.API = "[::]:9478" }, ""},
		{"api empty", func(f *Flags) { f.API = "" }, ""},
		{"api name", func(f *Flags) { f.API = "localhost:9478" }, `config: --api "localhost:9478": invalid address (want IP:PORT or off)`},
		{"api no port", func(f *Flags) { f.API = "::1" }, `config: --api "::1": port required (IP:PORT or off)`},
		{"api port", func(f *Flags) { f.API = "127.0.0.1:0" }, `config: --api "127.0.0.1:0": invalid port`},
		{"api multicast", func(f *Flags) { f.API = "224.0.0.9:9478" }, `config: --api "224.0.0.9:9478": multicast address not allowed`},
		{"name", func(f *Flags) { f.Name = "a\tb" }, `config: --name "a\tb": name must be printable text`},
		{"iface", func(f *Flags) { f.Interfaces = []string{"eth0,eth0"} }, `config: --iface "eth0": duplicate of --iface "eth0"`},
		{"snat port", func(f *Flags) { f.SNAT = []string{"198.18.0.2:1"} }, `config: --snat-ip "198.18.0.2:1": port not allowed here`},
		{"snat multicast", func(f *Flags) { f.SNAT = []string{"198.18.0.2", "224.0.0.5"} }, `config: --snat-ip "224.0.0.5": multicast address not allowed`},
		{"nat ports syntax", func(f *Flags) { f.NATPorts = "a-b" }, `config: --nat-ports "a-b": invalid port range (want LO-HI, a single port or auto)`},
		{"nat ports low", func(f *Flags) { f.NATPorts = "100-200" }, `config: --nat-ports "100-200": must start at 1024 or above`},
		{"nat ports overlap", func(f *Flags) {
			f.SNAT, f.NATPorts, f.VIP = []string{"198.18.0.100"}, "2000-3000", "198.18.0.100:2222"
		}, `config: --nat-ports "2000-3000": includes --vip "198.18.0.100:2222", a service port on an snat address`},
		{"max conns", func(f *Flags) { f.MaxConns = 0 }, `config: --max-conns "0": must be 1..67108864`},
		{"workers", func(f *Flags) { f.Workers = -3 }, `config: --workers "-3": must be 0..1024 (0 = one per CPU)`},
		{"timeout syn", func(f *Flags) { f.Timeouts.SYN = 0 }, `config: --timeout-syn "0s": must be greater than 0`},
		{"timeout established", func(f *Flags) { f.Timeouts.Established = -time.Minute }, `config: --timeout-established "-1m0s": must be greater than 0`},
		{"timeout fin", func(f *Flags) { f.Timeouts.FIN = 0 }, `config: --timeout-fin "0s": must be greater than 0`},
		{"timeout time wait", func(f *Flags) { f.Timeouts.TimeWait = 0 }, `config: --timeout-time-wait "0s": must be greater than 0`},
		{"timeout close", func(f *Flags) { f.Timeouts.Close = 0 }, `config: --timeout-close "0s": must be greater than 0`},
		{"health type", func(f *Flags) { f.Health.Type = "udp" }, `config: --health-type "udp": unknown health check type (want tcp, http or send-expect)`},
		{"health http", func(f *Flags) { f.Health.Type, f.Health.Path, f.Health.Status = "http", "/healthz", 204 }, ""},
		{"health http status", func(f *Flags) { f.Health.Type, f.Health.Status = "http", 1000 }, `config: --health-status "1000": must be 100..599`},
		{"health http path", func(f *Flags) { f.Health.Type, f.Health.Path = "http", "x" }, `config: --health-path "x": must start with "/"`},
		{"health http host", func(f *Flags) { f.Health.Type, f.Health.Host = "http", "a\tb" },
			`config: --health-host "a\tb": must be a host name or address[:port], visible ASCII without spaces`},
		{"health path on tcp", func(f *Flags) { f.Health.Path = "/healthz" }, `config: --health-path "/healthz": not used by type tcp (only by http)`},
		{"health status on tcp", func(f *Flags) { f.Health.Status = 200 }, `config: --health-status "200": not used by type tcp (only by http)`},
		{"health send-expect", func(f *Flags) {
			f.Health.Type, f.Health.Send, f.Health.Expect = "send-expect", "HEALTH CHECK\r\n", "OK"
		}, ""},
		{"health expect missing", func(f *Flags) { f.Health.Type, f.Health.Send = "send-expect", "PING\r\n" },
			`config: --health-expect: required by type send-expect (the start of the reply)`},
		{"health send long", func(f *Flags) {
			f.Health.Type, f.Health.Send, f.Health.Expect = "send-expect", strings.Repeat("s", 1025), "OK"
		},
			`config: --health-send "` + strings.Repeat("s", 80) + `...": too long (at most 1024 bytes)`},
		{"health send on http", func(f *Flags) { f.Health.Type, f.Health.Send = "http", "PING\r\n" },
			`config: --health-send "PING\r\n": not used by type http (only by send-expect)`},
		{"health expect on tcp", func(f *Flags) { f.Health.Expect = "OK" }, `config: --health-expect "OK": not used by type tcp (only by send-expect)`},
		{"health interval", func(f *Flags) { f.Health.Interval = 0 }, `config: --health-interval "0s": must be greater than 0`},
		{"health timeout", func(f *Flags) { f.Health.Timeout = -1 }, `config: --health-timeout "-1ns": must be greater than 0`},
		{"health relation", func(f *Flags) { f.Health.Timeout = 3 * time.Second }, `config: --health-interval: interval 2s must be greater than timeout 3s`},
		{"health rise", func(f *Flags) { f.Health.Rise = 0 }, `config: --health-rise "0": must be at least 1`},
		{"health fall", func(f *Flags) { f.Health.Fall = 0 }, `config: --health-fall "0": must be at least 1`},
		{"health passive off", func(f *Flags) { f.Health.Passive = 0 }, ""},
		{"health passive", func(f *Flags) { f.Health.Passive = 20000 }, `config: --health-passive "20000": must be 0..10000 (0 = off)`},
		{"health passive negative", func(f *Flags) { f.Health.Passive = -5 }, `config: --health-passive "-5": must be 0..10000 (0 = off)`},
		{"health zero is default", func(f *Flags) { f.Health = Health{} }, ""},
		{"log level", func(f *Flags) { f.LogLevel = "verbose" }, `config: --log-level "verbose": unknown log level (want debug, info, warn or error)`},
		{"log format", func(f *Flags) { f.LogFormat = "logfmt" }, `config: --log-format "logfmt": unknown log format (want text or json)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := base()
			tt.edit(&f)
			_, err := FromFlags(f)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("FromFlags() = %v, want nil", err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Fatalf("FromFlags() = %v\nwant            %s", err, tt.want)
			}
		})
	}
}

func TestFromFlagsSpec(t *testing.T) {
	f := DefaultFlags()
	f.VIP = "198.18.0.100:80"
	f.Backends = []string{"198.18.0.21", "198.18.0.22:8080"}
	got, err := FromFlags(f)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Services = []Service{{
		Name: "198.18.0.100:80", VIP: netip.MustParseAddr("198.18.0.100"), Ports: []uint16{80},
		Scheduler: "rr", MaintFlows: MaintFlowsKeep, Health: DefaultHealth(),
		Backends: []Backend{
			{Addr: netip.MustParseAddrPort("198.18.0.21:0"), Weight: 1, State: StateReady},
			{Addr: netip.MustParseAddrPort("198.18.0.22:8080"), Weight: 1, State: StateReady},
		},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestRegister(t *testing.T) {
	f := DefaultFlags()
	fs := flag.NewFlagSet("l4raw", flag.ContinueOnError)
	var help bytes.Buffer
	fs.SetOutput(&help)
	f.Register(fs)
	args := []string{
		"--vip", "198.18.0.100:443", "--backend", "198.18.0.21,198.18.0.22", "--backend", "198.18.0.23:8443",
		"--mode", "dnat", "--name", "tls", "--iface", "eth0", "--iface", "eth1", "--snat-ip", "198.18.0.2",
		"--nat-ports", "50000-50999", "--max-conns", "1000", "--workers", "2", "--timeout-syn", "5s",
		"--timeout-established", "1h", "--timeout-fin", "30s", "--timeout-time-wait", "3s", "--timeout-close", "1s",
		"--health-interval", "500ms", "--health-timeout", "200ms", "--health-rise", "1", "--health-fall", "2",
		"--health-port", "9000", "--health-passive", "0", "--no-guard", "--log-level", "debug", "--log-format", "json",
		"--scheduler", "maglev", "--maint-flows", "reset", "--api", "[::1]:9999",
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	s, err := FromFlags(f)
	if err != nil {
		t.Fatal(err)
	}
	svc := s.Services[0]
	if svc.Name != "tls" || svc.Mode != ModeDNAT || len(svc.Backends) != 3 || svc.Backends[2].Addr.Port() != 8443 ||
		svc.Scheduler != "maglev" || svc.MaintFlows != MaintFlowsReset || svc.Backends[0].State != StateReady ||
		svc.Health != (Health{Type: "tcp", Interval: 500 * time.Millisecond, Timeout: 200 * time.Millisecond, Rise: 1, Fall: 2, Port: 9000}) {
		t.Errorf("service: %+v", svc)
	}
	if !reflect.DeepEqual(s.Interfaces, []string{"eth0", "eth1"}) || s.NATPorts != (PortRange{Lo: 50000, Hi: 50999}) ||
		s.MaxConns != 1000 || s.Workers != 2 || s.Guard || s.LogFormat != "json" || s.API != "[::1]:9999" ||
		s.Timeouts != (Timeouts{SYN: 5 * time.Second, Established: time.Hour, FIN: 30 * time.Second, TimeWait: 3 * time.Second, Close: time.Second}) {
		t.Errorf("spec: %+v", s)
	}

	// Defaults shown in --help come from DefaultFlags.
	fs.PrintDefaults()
	for _, want := range []string{"-timeout-established duration", "(default 15m0s)", "-max-conns int", "(default 1048576)", "-health-port value",
		"-health-passive int", "(default 3)", "-maint-flows string", `(default "keep")`, `(default "127.0.0.1:9478")`,
		"scheduler: rr, wrr, lc, random, sh or maglev", "runtime API address (HTTP/JSON and /metrics; no authentication: keep it on loopback) or off"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("--help lacks %q:\n%s", want, help.String())
		}
	}
	if err := fs.Parse([]string{"--health-port", "70000"}); err == nil || !strings.Contains(err.Error(), "invalid port") {
		t.Errorf("--health-port 70000: %v", err)
	}
}

func TestRegisterHealth(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want Health
	}{
		{[]string{"--health-type", "http", "--health-path", "/healthz?x=1", "--health-status", "204", "--health-host", "example.org"},
			Health{Type: "http", Path: "/healthz?x=1", Status: 204, Host: "example.org"}},
		{[]string{"--health-type", "http"}, Health{Type: "http", Path: "/", Status: 200}},
		{[]string{"--health-type", "send-expect", "--health-send", `HEALTH CHECK\r\n`, "--health-expect", "OK"},
			Health{Type: "send-expect", Send: "HEALTH CHECK\r\n", Expect: "OK"}},
		{[]string{"--health-type", "send-expect", "--health-expect", `SSH-2.0-`}, Health{Type: "send-expect", Expect: "SSH-2.0-"}},
		{[]string{"--health-type", "send-expect", "--health-send", `\x00\x01\\\"\t\0`, "--health-expect", `\xff`},
			Health{Type: "send-expect", Send: "\x00\x01\\\"\t\x00", Expect: "\xff"}},
	} {
		f := DefaultFlags()
		fs := flag.NewFlagSet("l4raw", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		f.Register(fs)
		if err := fs.Parse(append([]string{"--vip", "198.18.0.100:80", "--backend", "198.18.0.21"}, tt.args...)); err != nil {
			t.Fatalf("%q: %v", tt.args, err)
		}
		s, err := FromFlags(f)
		if err != nil {
			t.Fatalf("%q: %v", tt.args, err)
		}
		want := DefaultHealth()
		want.Type, want.Path, want.Status, want.Host, want.Send, want.Expect = tt.want.Type, tt.want.Path, tt.want.Status, tt.want.Host, tt.want.Send, tt.want.Expect
		if s.Health != want || s.Services[0].Health != want {
			t.Errorf("%q: health %+v\nwant %+v", tt.args, s.Services[0].Health, want)
		}
	}
	for _, tt := range []struct{ arg, want string }{
		{`\q`, `invalid value "\\q" for flag -health-send: unknown escape \q (want \r, \n, \t, \0, \\, \" or \xHH)`},
		{`a\`, `invalid value "a\\" for flag -health-send: trailing \ (write \\ for a backslash)`},
		{`\x4`, `invalid value "\\x4" for flag -health-send: \x needs two hex digits`},
		{"\\\r", `invalid value "\\\r" for flag -health-send: unknown escape \ before byte 0x0d (want \r, \n, \t, \0, \\, \" or \xHH)`},
		{`\xzz`, `invalid value "\\xzz" for flag -health-send: \x needs two hex digits`},
	} {
		f := DefaultFlags()
		fs := flag.NewFlagSet("l4raw", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		f.Register(fs)
		if err := fs.Parse([]string{"--health-send", tt.arg}); err == nil || err.Error() != tt.want {
			t.Errorf("--health-send %s: %v\nwant %s", tt.arg, err, tt.want)
		}
	}
}

func TestEscapeRoundTrip(t *testing.T) {
	for _, s := range []string{"", "HEALTH CHECK\r\n", "a\\b", "\x00\x7f\xff\t", "plain"} {
		got, err := unescape(escape(s))
		if err != nil || got != s {
			t.Errorf("unescape(escape(%q)) = %q, %v", s, got, err)
		}
	}
	if got := escape("PING\r\n\x01"); got != `PING\r\n\x01` {
		t.Errorf("escape = %s", got)
	}
}

// FuzzUnescape checks that what unescape accepts, escape writes back to
// something unescape reads as the same bytes.
func FuzzUnescape(f *testing.F) {
	for _, s := range []string{`HEALTH CHECK\r\n`, `\x00\xff`, `\\`, `\`, `\x`, `\q`, "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := unescape(s)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		back, err := unescape(escape(v))
		if err != nil || back != v {
			t.Fatalf("round trip of %q: %q, %v", v, back, err)
		}
	})
}
