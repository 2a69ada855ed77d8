package config

import (
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseExample(t *testing.T) {
	data, err := os.ReadFile("../../testdata/config/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse("example.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort
	want := Default()
	want.Interfaces = []string{"eth0"}
	want.SNAT = []netip.Addr{netip.MustParseAddr("198.18.0.2")}
	want.NATPorts = PortRange{Lo: 61000, Hi: 65535}
	want.API = "127.0.0.1:9478"
	want.Services = []Service{
		{
			Name: "web", VIP: netip.MustParseAddr("198.18.0.100"), Ports: []uint16{80, 443},
			Mode: ModeFullNAT, Scheduler: "wrr", MaintFlows: MaintFlowsKeep,
			Health: Health{Type: "http", Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 2, Fall: 3, Passive: 3,
				Path: "/healthz", Status: 200, Host: "example.org"},
			Backends: []Backend{
				{Addr: ap("198.18.0.21:0"), Weight: 1, State: StateReady},
				{Addr: ap("198.18.0.22:0"), Weight: 2, State: StateReady},
				{Addr: ap("198.18.0.23:0"), Weight: 2, State: StateDrain},
			},
		},
		{
			Name: "198.18.0.101:8080", VIP: netip.MustParseAddr("198.18.0.101"), Ports: []uint16{8080},
			Mode: ModeDNAT, Scheduler: "maglev", MaintFlows: MaintFlowsReset, Health: DefaultHealth(),
			Backends: []Backend{
				{Addr: ap("198.18.0.31:80"), Weight: 1, State: StateReady},
				{Addr: ap("198.18.0.32:80"), Weight: 0, State: StateReady},
				{Addr: ap("198.18.0.33:80"), Weight: 1, State: StateMaint},
			},
		},
		{
			Name: "echo", VIP: netip.MustParseAddr("198.18.0.102"), Ports: []uint16{7000},
			Mode: ModeFullNAT, Scheduler: "rr", MaintFlows: MaintFlowsKeep,
			Health: Health{Type: "send-expect", Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3, Passive: 0,
				Send: "HEALTH CHECK\r\n", Expect: "OK"},
			Backends: []Backend{{Addr: ap("198.18.0.41:0"), Weight: 1, State: StateReady}, {Addr: ap("198.18.0.42:0"), Weight: 1, State: StateReady}},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse(example.yaml) =\n%+v\nwant\n%+v", got, want)
	}
}

func TestParseDefaults(t *testing.T) {
	got, err := Parse("min.yaml", []byte("services: [{vip: 198.18.0.100, port: 80, backends: [198.18.0.21]}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Services = []Service{{
		Name: "198.18.0.100:80", VIP: netip.MustParseAddr("198.18.0.100"), Ports: []uint16{80},
		Scheduler: "rr", MaintFlows: MaintFlowsKeep, Health: DefaultHealth(),
		Backends: []Backend{{Addr: netip.MustParseAddrPort("198.18.0.21:0"), Weight: 1, State: StateReady}},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseValues(t *testing.T) {
	doc := `
guard: false
workers: 4
max_conns: 0x100
log: {level: DEBUG, format: json}
nat_ports: 40000
timeouts: {established: 1h}
health: {timeout: 300ms, rise: 1, port: 9000, passive: 10}
api: '[::1]:9000'
services:
  - vip: 198.18.0.100
    ports: [80, 443]
    health: {fall: 5, port: 0, passive: 0}
    scheduler: lc
    maint_flows: reset
    backends: &web
      - 198.18.0.21
      - {address: 198.18.0.22, weight: 5, state: maint}
  - vip: "198.18.0.101"
    port: 80
    health: ~
    backends: *web
`
	s, err := Parse("v.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if s.Guard || s.Workers != 4 || s.MaxConns != 256 || s.LogLevel != slog.LevelDebug || s.LogFormat != "json" ||
		s.NATPorts != (PortRange{Lo: 40000, Hi: 40000}) || s.Timeouts.Established != time.Hour || s.Timeouts.SYN != time.Minute ||
		s.API != "[::1]:9000" {
		t.Errorf("top level: %+v", s)
	}
	if svc := s.Services[0]; svc.Scheduler != "lc" || svc.MaintFlows != MaintFlowsReset || s.Services[1].MaintFlows != MaintFlowsKeep {
		t.Errorf("scheduler %q, maint_flows %q and %q", svc.Scheduler, svc.MaintFlows, s.Services[1].MaintFlows)
	}
	if b := s.Services[1].Backends; b[0].State != StateReady || b[1].State != StateMaint {
		t.Errorf("states: %+v", b)
	}
	h0 := Health{Type: "tcp", Interval: 2 * time.Second, Timeout: 300 * time.Millisecond, Rise: 1, Fall: 5}
	h1 := Health{Type: "tcp", Interval: 2 * time.Second, Timeout: 300 * time.Millisecond, Rise: 1, Fall: 3, Port: 9000, Passive: 10}
	if s.Services[0].Health != h0 || s.Services[1].Health != h1 {
		t.Errorf("health: %+v, %+v", s.Services[0].Health, s.Services[1].Health)
	}
	if !reflect.DeepEqual(s.Services[0].Backends, s.Services[1].Backends) || s.Services[1].Backends[1].Weight != 5 {
		t.Errorf("aliased backends: %+v vs %+v", s.Services[0].Backends, s.Services[1].Backends)
	}
}

func TestParseErrors(t *testing.T) {
	// svc is a valid one-service body; cases append to or replace parts of it.
	const svc = "services:\n  - name: web\n    vip: 198.18.0.100\n    port: 80\n    backends:\n      - 198.18.0.21\n"
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{"empty", "", `config: t.yaml: services: at least one service required`},
		{"comments only", "# nothing\n", `config: t.yaml: services: at least one service required`},
		{"null", "~\n", `config: t.yaml: services: at least one service required`},
		{"empty list", "services: []\n", `config: t.yaml:1: services: at least one service required`},
		{"syntax", "services: [\n", `config: t.yaml:1: did not find expected node content`},
		{"tab indent", "services:\n\t- vip: 1\n", `config: t.yaml:2: found character that cannot start any token`},
		{"two documents", svc + "---\nguard: true\n", `config: t.yaml:7: more than one document`},
		{"root list", "- 1\n", `config: t.yaml:1: must be a mapping (key: value)`},
		{"unknown top", svc + "gaurd: true\n", `config: t.yaml:7: unknown field "gaurd"`},
		{"unknown service field", "services:\n  - vip: 198.18.0.100\n    bakends: []\n", `config: t.yaml:3: services[0]: unknown field "bakends"`},
		{"duplicate field", svc + "    vip: 198.18.0.101\n", `config: t.yaml:7: services[0]: duplicate field "vip" (first at line 3)`},
		{"merge key", "base: &b {port: 80}\n", `config: t.yaml:1: unknown field "base"`},
		{"complex key", "? [a]\n: 1\n", `config: t.yaml:1: keys must be plain names`},
		{"services mapping", "services: {web: 1}\n", `config: t.yaml:1: services: must be a list`},
		{"service scalar", "services: [web]\n", `config: t.yaml:1: services[0]: must be a mapping (key: value)`},
		{"vip missing", "services:\n  - port: 80\n    backends: [198.18.0.21]\n", `config: t.yaml:2: services[0].vip: address required`},
		{"vip null", "services:\n  - vip:\n    port: 80\n", `config: t.yaml:2: services[0].vip: value required`},
		{"vip list", "services:\n  - vip: [198.18.0.100]\n", `config: t.yaml:2: services[0].vip: must be a single value`},
		{"vip invalid", strings.Replace(svc, "198.18.0.100", "198.18.0.300", 1), `config: t.yaml:3: services[0].vip: "198.18.0.300": invalid address`},
		{"vip with port", strings.Replace(svc, "198.18.0.100", "198.18.0.100:80", 1), `config: t.yaml:3: services[0].vip: "198.18.0.100:80": port not allowed here (use port or ports)`},
		{"vip ipv6", strings.Replace(svc, "198.18.0.100", "'2001:db8::1'", 1), `config: t.yaml:3: services[0].vip: "2001:db8::1": IPv6 not supported yet`},
		{"vip multicast", strings.Replace(svc, "198.18.0.100", "239.1.1.1", 1), `config: t.yaml:3: services[0].vip: "239.1.1.1": multicast address not allowed`},
		{"port and ports", svc + "    ports: [81]\n", `config: t.yaml:7: services[0].ports: use either port or ports, not both`},
		{"no port", "services:\n  - vip: 198.18.0.100\n    backends: [198.18.0.21]\n", `config: t.yaml:2: services[0].ports: at least one port required`},
		{"port 0", strings.Replace(svc, "port: 80", "port: 0", 1), `config: t.yaml:4: services[0].port: "0": invalid port`},
		{"port high", strings.Replace(svc, "port: 80", "port: 65536", 1), `config: t.yaml:4: services[0].port: "65536": invalid port`},
		{"port text", strings.Replace(svc, "port: 80", "port: http", 1), `config: t.yaml:4: services[0].port: "http": invalid port`},
		{"port quoted", strings.Replace(svc, "port: 80", `port: "80"`, 1), `config: t.yaml:4: services[0].port: "80": invalid port`},
		{"ports element", strings.Replace(svc, "port: 80", "ports: [80, -1]", 1), `config: t.yaml:4: services[0].ports[1]: "-1": invalid port`},
		{"ports duplicate", strings.Replace(svc, "port: 80", "ports:\n      - 80\n      - 80", 1), `config: t.yaml:6: services[0].ports[1]: "80": duplicate of services[0].ports[0] (line 5)`},
		{"ports scalar", strings.Replace(svc, "port: 80", "ports: 80", 1), `config: t.yaml:4: services[0].ports: must be a list`},
		{"mode", svc + "    mode: snat\n", `config: t.yaml:7: services[0].mode: "snat": unknown mode (want fullnat or dnat)`},
		{"scheduler maglev", svc + "    scheduler: maglev\n", ""},
		{"scheduler sh", svc + "    scheduler: sh\n", ""},
		{"scheduler random", svc + "    scheduler: random\n", ""},
		{"scheduler unknown", svc + "    scheduler: 7\n", `config: t.yaml:7: services[0].scheduler: "7": unknown scheduler (want rr, wrr, lc, random, sh or maglev)`},
		{"scheduler ipvs only", svc + "    scheduler: wlc\n", `config: t.yaml:7: services[0].scheduler: "wlc": unknown scheduler (want rr, wrr, lc, random, sh or maglev)`},
		{"maint_flows reset", svc + "    maint_flows: reset\n", ""},
		{"maint_flows unknown", svc + "    maint_flows: kill\n", `config: t.yaml:7: services[0].maint_flows: "kill": unknown maint flows policy (want keep or reset)`},
		{"maint_flows bool", svc + "    maint_flows: true\n", `config: t.yaml:7: services[0].maint_flows: "true": unknown maint flows policy (want keep or reset)`},
		{"maint_flows list", svc + "    maint_flows: [keep]\n", `config: t.yaml:7: services[0].maint_flows: must be a single value`},
		{"maint_flows misspelt", svc + "    maint-flows: keep\n", `config: t.yaml:7: services[0]: unknown field "maint-flows"`},
		{"state drain", svc + "      - {address: 198.18.0.22, state: drain}\n", ""},
		{"state maint", svc + "      - address: 198.18.0.22\n        weight: 0\n        state: maint\n", ""},
		{"state empty", svc + "      - {address: 198.18.0.22, state: ''}\n", ""},
		{"state unknown", svc + "      - address: 198.18.0.22\n        state: down\n", `config: t.yaml:8: services[0].backends[1].state: "down": unknown state (want ready, drain or maint)`},
		{"state null", svc + "      - {address: 198.18.0.22, state: }\n", `config: t.yaml:7: services[0].backends[1].state: value required`},
		{"state short form", svc + "      - 198.18.0.22 drain\n", `config: t.yaml:7: services[0].backends[1]: "198.18.0.22 drain": invalid address`},
		{"no backends", "services:\n  - vip: 198.18.0.100\n    port: 80\n    backends: []\n", `config: t.yaml:4: services[0].backends: at least one backend required`},
		{"backends absent", "services:\n  - vip: 198.18.0.100\n    port: 80\n", `config: t.yaml:2: services[0].backends: at least one backend required`},
		{"backend address", svc + "      - {address: 198.18.0.300:8080, weight: 2}\n", `config: t.yaml:7: services[0].backends[1]: "198.18.0.300:8080": invalid address`},
		{"backend short address", svc + "      - 198.18.0.22:99999\n", `config: t.yaml:7: services[0].backends[1]: "198.18.0.22:99999": invalid port`},
		{"backend port text", svc + "      - 198.18.0.22:http\n", `config: t.yaml:7: services[0].backends[1]: "198.18.0.22:http": invalid port`},
		{"backend name", svc + "      - web1.example\n", `config: t.yaml:7: services[0].backends[1]: "web1.example": invalid address`},
		{"backend no address", svc + "      - {weight: 2}\n", `config: t.yaml:7: services[0].backends[1]: address required`},
		{"backend unknown field", svc + "      - {address: 198.18.0.22, wieght: 2}\n", `config: t.yaml:7: services[0].backends[1]: unknown field "wieght"`},
		{"backend list", svc + "      - [198.18.0.22]\n", `config: t.yaml:7: services[0].backends[1]: must be a single value`},
		{"backend ipv6", svc + "      - '[2001:db8::2]:80'\n", `config: t.yaml:7: services[0].backends[1]: "[2001:db8::2]:80": IPv6 not supported yet`},
		{"backend unspecified", svc + "      - 0.0.0.0\n", `config: t.yaml:7: services[0].backends[1]: "0.0.0.0": unspecified address not allowed`},
		{"backend duplicate", svc + "      - 198.18.0.21:80\n", `config: t.yaml:7: services[0].backends[1]: "198.18.0.21:80": duplicate of services[0].backends[0] (line 6)`},
		{"backend is vip", svc + "      - 198.18.0.100:80\n", `config: t.yaml:7: services[0].backends[1]: "198.18.0.100:80": backend is the service address itself (a forwarding loop)`},
		{"backend port with ports", strings.Replace(svc, "port: 80", "ports: [80, 443]", 1) + "      - {address: 198.18.0.22:8080, weight: 2}\n",
			`config: t.yaml:7: services[0].backends[1]: "198.18.0.22:8080": port not allowed: the service has several ports, each goes to the same port on the backend`},
		{"weight text", svc + "      - {address: 198.18.0.22, weight: heavy}\n", `config: t.yaml:7: services[0].backends[1].weight: "heavy": must be an integer`},
		{"weight float", svc + "      - {address: 198.18.0.22, weight: 1.5}\n", `config: t.yaml:7: services[0].backends[1].weight: "1.5": must be an integer`},
		{"weight high", svc + "      - address: 198.18.0.22\n        weight: 70000\n", `config: t.yaml:8: services[0].backends[1].weight: "70000": must be 0..65535`},
		{"weight huge", svc + "      - {address: 198.18.0.22, weight: 99999999999}\n", `config: t.yaml:7: services[0].backends[1].weight: "99999999999": out of range`},
		{"duplicate vip port", svc + "  - name: api\n    vip: 198.18.0.100\n    ports: [8080, 80]\n    backends: [198.18.0.31]\n",
			`config: t.yaml:9: services[1].ports[1]: "198.18.0.100:80": already used by services[0].port (line 4)`},
		{"duplicate name", svc + "  - name: web\n    vip: 198.18.0.101\n    port: 80\n    backends: [198.18.0.31]\n",
			`config: t.yaml:7: services[1].name: "web": already used by services[0] (line 2)`},
		{"name default collides", svc + "  - vip: 198.18.0.101\n    port: 80\n    backends: [198.18.0.31]\n  - name: 198.18.0.101:80\n    vip: 198.18.0.102\n    port: 80\n    backends: [198.18.0.31]\n",
			`config: t.yaml:10: services[2].name: "198.18.0.101:80": already used by services[1] (line 7)`},
		{"name empty", strings.Replace(svc, "name: web", `name: ""`, 1), ""},
		{"health type", svc + "    health: {type: http}\n", ""},
		{"health type unknown", svc + "    health: {type: smtp}\n", `config: t.yaml:7: services[0].health.type: "smtp": unknown health check type (want tcp, http or send-expect)`},
		{"health http status", svc + "    health: {type: http, status: 999}\n", `config: t.yaml:7: services[0].health.status: "999": must be 100..599`},
		{"health http status text", svc + "    health: {type: http, status: OK}\n", `config: t.yaml:7: services[0].health.status: "OK": must be an integer`},
		{"health http status quoted", svc + "    health: {type: http, status: \"200\"}\n", `config: t.yaml:7: services[0].health.status: "200": must be an integer`},
		{"health http path", "health:\n  type: http\n  path: healthz\n" + svc, `config: t.yaml:3: health.path: "healthz": must start with "/"`},
		{"health http path null", "health: {type: http, path: }\n" + svc, `config: t.yaml:1: health.path: value required`},
		{"health http host", svc + "    health:\n      type: http\n      host: \"a\\nb\"\n",
			`config: t.yaml:9: services[0].health.host: "a\nb": must be a host name or address[:port], visible ASCII without spaces`},
		{"health path on tcp", svc + "    health: {path: /healthz}\n", `config: t.yaml:7: services[0].health.path: "/healthz": not used by type tcp (only by http)`},
		{"health send on http", "health:\n  type: http\n  send: PING\n" + svc, `config: t.yaml:3: health.send: "PING": not used by type http (only by send-expect)`},
		{"health status on send-expect", svc + "    health: {type: send-expect, expect: OK, status: 200}\n",
			`config: t.yaml:7: services[0].health.status: "200": not used by type send-expect (only by http)`},
		{"health expect missing", svc + "    health:\n      type: send-expect\n      send: \"PING\\r\\n\"\n",
			`config: t.yaml:8: services[0].health.expect: required by type send-expect (the start of the reply)`},
		{"health expect long", svc + "    health: {type: send-expect, expect: " + strings.Repeat("e", 1025) + "}\n",
			`config: t.yaml:7: services[0].health.expect: "` + strings.Repeat("e", 80) + `...": too long (at most 1024 bytes)`},
		{"health send long", "health: {type: send-expect, expect: OK, send: " + strings.Repeat("s", 2000) + "}\n" + svc,
			`config: t.yaml:1: health.send: "` + strings.Repeat("s", 80) + `...": too long (at most 1024 bytes)`},
		{"health send list", "health: {type: send-expect, expect: OK, send: [a]}\n" + svc, `config: t.yaml:1: health.send: must be a single value`},
		// A service that changes the type drops the global type's fields...
		{"health type change drops fields", "health: {type: http, path: /healthz}\n" + svc + "    health: {type: tcp}\n", ""},
		// ...but not those it sets itself.
		{"health type change keeps own fields", "health: {type: http, path: /healthz}\n" + svc + "    health: {type: tcp, path: /x}\n",
			`config: t.yaml:8: services[0].health.path: "/x": not used by type tcp (only by http)`},
		{"health inherited type", "health: {type: send-expect, expect: OK}\n" + svc + "    health: {path: /}\n",
			`config: t.yaml:8: services[0].health.path: "/": not used by type send-expect (only by http)`},
		{"health override breaks interval", svc + "    health: {interval: 1s}\n", `config: t.yaml:7: services[0].health: interval 1s must be greater than timeout 1s`},
		{"health global interval", "health:\n  interval: 1000ms\n  timeout: 1s\n" + svc, `config: t.yaml:2: health: interval 1s must be greater than timeout 1s`},
		{"health interval unit", "health: {interval: 2}\n" + svc, `config: t.yaml:1: health.interval: "2": invalid duration (want a number with a unit, e.g. 2s)`},
		{"health interval text", "health: {interval: soon}\n" + svc, `config: t.yaml:1: health.interval: "soon": invalid duration (want a number with a unit, e.g. 2s)`},
		{"health timeout 0", "health: {timeout: 0s}\n" + svc, `config: t.yaml:1: health.timeout: "0s": must be greater than 0`},
		{"health rise 0", svc + "    health:\n      rise: 0\n", `config: t.yaml:8: services[0].health.rise: "0": must be at least 1`},
		{"health fall", "health: {fall: -2}\n" + svc, `config: t.yaml:1: health.fall: "-2": must be at least 1`},
		{"health port", "health: {port: 65536}\n" + svc, `config: t.yaml:1: health.port: "65536": invalid port`},
		{"health passive off", "health: {passive: 0}\n" + svc, ""},
		{"health passive high", "health: {passive: 10001}\n" + svc, `config: t.yaml:1: health.passive: "10001": must be 0..10000 (0 = off)`},
		{"health passive negative", svc + "    health:\n      passive: -1\n", `config: t.yaml:8: services[0].health.passive: "-1": must be 0..10000 (0 = off)`},
		{"health passive text", svc + "    health: {passive: off}\n", `config: t.yaml:7: services[0].health.passive: "off": must be an integer`},
		{"health passive huge", "health: {passive: 1e9}\n" + svc, `config: t.yaml:1: health.passive: "1e9": must be an integer`},
		{"health unknown", "health: {inter: 2s}\n" + svc, `config: t.yaml:1: health: unknown field "inter"`},
		{"health scalar", "health: tcp\n" + svc, `config: t.yaml:1: health: must be a mapping (key: value)`},
		{"timeouts syn", svc + "timeouts:\n  syn: 0s\n", `config: t.yaml:8: timeouts.syn: "0s": must be greater than 0`},
		{"timeouts negative", svc + "timeouts: {close: -1s}\n", `config: t.yaml:7: timeouts.close: "-1s": must be greater than 0`},
		{"timeouts raw value kept", svc + "timeouts: {fin: -1000ms}\n", `config: t.yaml:7: timeouts.fin: "-1000ms": must be greater than 0`},
		{"timeouts unknown", svc + "timeouts: {timewait: 1s}\n", `config: t.yaml:7: timeouts: unknown field "timewait"`},
		{"max_conns text", "max_conns: lots\n" + svc, `config: t.yaml:1: max_conns: "lots": must be an integer`},
		{"max_conns 0", "max_conns: 0\n" + svc, `config: t.yaml:1: max_conns: "0": must be 1..67108864`},
		{"max_conns high", "max_conns: 1_000_000_000\n" + svc, `config: t.yaml:1: max_conns: "1_000_000_000": must be 1..67108864`},
		{"workers", "workers: 2000\n" + svc, `config: t.yaml:1: workers: "2000": must be 0..1024 (0 = one per CPU)`},
		{"guard", "guard: maybe\n" + svc, `config: t.yaml:1: guard: "maybe": must be true or false`},
		{"guard yes", "guard: yes\n" + svc, `config: t.yaml:1: guard: "yes": must be true or false`},
		{"log level", "log: {level: trace}\n" + svc, `config: t.yaml:1: log.level: "trace": unknown log level (want debug, info, warn or error)`},
		{"log format", "log:\n  format: xml\n" + svc, `config: t.yaml:2: log.format: "xml": unknown log format (want text or json)`},
		{"log unknown", "log: {lvl: info}\n" + svc, `config: t.yaml:1: log: unknown field "lvl"`},
		{"api off", "api: off\n" + svc, ""},
		{"api ipv6", "api: '[::1]:9478'\n" + svc, ""},
		{"api any", svc + "api: 0.0.0.0:9478\n", ""},
		{"api name", "api: localhost:9478\n" + svc, `config: t.yaml:1: api: "localhost:9478": invalid address (want IP:PORT or off)`},
		{"api bool", "api: false\n" + svc, `config: t.yaml:1: api: "false": invalid address (want IP:PORT or off)`},
		{"api no port", "api: 127.0.0.1\n" + svc, `config: t.yaml:1: api: "127.0.0.1": port required (IP:PORT or off)`},
		{"api port", "api: 127.0.0.1:99999\n" + svc, `config: t.yaml:1: api: "127.0.0.1:99999": invalid port`},
		{"api multicast", "api: 239.0.0.1:9478\n" + svc, `config: t.yaml:1: api: "239.0.0.1:9478": multicast address not allowed`},
		{"api null", "api:\n" + svc, `config: t.yaml:1: api: value required`},
		{"api mapping", "api: {addr: 127.0.0.1:9478}\n" + svc, `config: t.yaml:1: api: must be a single value`},
		{"nat_ports syntax", "nat_ports: 1000:2000\n" + svc, `config: t.yaml:1: nat_ports: "1000:2000": invalid port range (want LO-HI, a single port or auto)`},
		{"nat_ports low", "nat_ports: 80-90\n" + svc, `config: t.yaml:1: nat_ports: "80-90": must start at 1024 or above`},
		{"nat_ports reversed", "nat_ports: 3000-2000\n" + svc, `config: t.yaml:1: nat_ports: "3000-2000": low port above high port`},
		{"nat_ports auto", "nat_ports: auto\n" + svc, ""},
		{"nat_ports overlap", "snat: [198.18.0.100]\nnat_ports: 1024-65535\n" + strings.Replace(svc, "port: 80", "port: 8080", 1),
			`config: t.yaml:2: nat_ports: "1024-65535": includes services[0].port (line 6), a service port on an snat address`},
		{"snat port", "snat: [198.18.0.2:80]\n" + svc, `config: t.yaml:1: snat[0]: "198.18.0.2:80": port not allowed here`},
		{"snat invalid", "snat: [nope]\n" + svc, `config: t.yaml:1: snat[0]: "nope": invalid address`},
		{"snat loopback", "snat:\n  - 198.18.0.2\n  - 127.0.0.2\n" + svc, `config: t.yaml:3: snat[1]: "127.0.0.2": loopback address not allowed (not reachable through an interface)`},
		{"snat duplicate", "snat: [198.18.0.2, 198.18.0.2]\n" + svc, `config: t.yaml:1: snat[1]: "198.18.0.2": duplicate of snat[0] (line 1)`},
		{"snat scalar", "snat: 198.18.0.2\n" + svc, `config: t.yaml:1: snat: must be a list`},
		{"iface invalid", "interfaces: [eth0, 'a b']\n" + svc, `config: t.yaml:1: interfaces[1]: "a b": invalid interface name`},
		{"iface empty", "interfaces: ['']\n" + svc, `config: t.yaml:1: interfaces[0]: "": invalid interface name`},
		{"iface null", "interfaces: [~]\n" + svc, `config: t.yaml:1: interfaces[0]: value required`},
		{"long value is cut", "log: {level: " + strings.Repeat("x", 200) + "}\n" + svc,
			`config: t.yaml:1: log.level: "` + strings.Repeat("x", 80) + `...": unknown log level (want debug, info, warn or error)`},
		{"control characters", "log: {level: \"a\\nb\\u0007\"}\n" + svc, `config: t.yaml:1: log.level: "a\nb\a": unknown log level (want debug, info, warn or error)`},
		{"unknown alias", "services: *nope\n", `config: t.yaml: unknown anchor 'nope' referenced`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tt.doc))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Parse() = %v, want nil", err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Fatalf("Parse() = %v\nwant        %s", err, tt.want)
			}
		})
	}
}

// TestParseHealth checks the new check types' fields, their defaults and
// how services inherit them.
func TestParseHealth(t *testing.T) {
	doc := `
health: {type: http, path: /healthz, host: example.org, interval: 3s, passive: 7}
services:
  - vip: 198.18.0.100
    port: 80
    backends: [198.18.0.21]
  - vip: 198.18.0.100
    port: 81
    health: {status: 204, port: 8081}
    backends: [198.18.0.21]
  - vip: 198.18.0.100
    port: 82
    health: {type: send-expect, send: "HEALTH CHECK\r\n", expect: "OK"}
    backends: [198.18.0.21]
  - vip: 198.18.0.100
    port: 83
    health:
      type: send-expect
      expect: 220
    backends: [198.18.0.21]
  - vip: 198.18.0.100
    port: 84
    health: {type: tcp}
    backends: [198.18.0.21]
  - vip: 198.18.0.100
    port: 85
    health: {type: http}
    backends: [198.18.0.21]
`
	s, err := Parse("h.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	// passive is inherited like the other fields, across a type change too.
	base := Health{Interval: 3 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3, Passive: 7}
	with := func(edit func(h *Health)) Health {
		h := base
		edit(&h)
		return h
	}
	httpz := with(func(h *Health) { h.Type, h.Path, h.Status, h.Host = "http", "/healthz", 200, "example.org" })
	want := []Health{
		httpz,
		with(func(h *Health) { *h = httpz; h.Status, h.Port = 204, 8081 }),
		with(func(h *Health) { h.Type, h.Send, h.Expect = "send-expect", "HEALTH CHECK\r\n", "OK" }),
		with(func(h *Health) { h.Type, h.Expect = "send-expect", "220" }),
		with(func(h *Health) { h.Type = "tcp" }),
		httpz, // same type as the global: its fields are inherited
	}
	if s.Health != httpz {
		t.Errorf("global health %+v, want %+v", s.Health, httpz)
	}
	for i, w := range want {
		if got := s.Services[i].Health; got != w {
			t.Errorf("services[%d].health = %+v\nwant                %+v", i, got, w)
		}
	}
}

func TestParseNotSupported(t *testing.T) {
	_, err := Parse("t.yaml", []byte("services: [{vip: '2001:db8::1', port: 80, scheduler: wrr, backends: ['2001:db8::2']}]"))
	if !errors.Is(err, ErrNotSupported) {
		t.Fatalf("Parse() = %v, want an error wrapping ErrNotSupported", err)
	}
}

// TestParseAliasBomb checks that aliases cannot make a short document cost
// unbounded work.
func TestParseAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("services:\n  - &s\n    vip: 198.18.0.1\n    port: 80\n    backends: &b [")
	for i := 0; i < 2000; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("198.18.0.2")
	}
	b.WriteString("]\n")
	for i := 0; i < 2000; i++ {
		b.WriteString("  - *s\n")
	}
	start := time.Now()
	_, err := Parse("bomb.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "document too large") {
		t.Fatalf("Parse() = %v, want a size error", err)
	}
	// Loose on purpose (the race detector and a loaded machine slow it
	// down); unbounded work would take hours.
	if d := time.Since(start); d > time.Minute {
		t.Errorf("Parse took %v", d)
	}
}
