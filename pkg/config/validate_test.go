package config

import (
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// validSpec is a small valid Spec that each case below breaks in one way.
func validSpec() Spec {
	s := Default()
	s.Services = []Service{{
		Name:     "web",
		VIP:      netip.MustParseAddr("198.18.0.100"),
		Ports:    []uint16{80},
		Backends: []Backend{{Addr: netip.MustParseAddrPort("198.18.0.21:8080"), Weight: 1}, {Addr: netip.MustParseAddrPort("198.18.0.22:0"), Weight: 1}},
	}}
	return s
}

func TestValidate(t *testing.T) {
	a := netip.MustParseAddr
	ap := netip.MustParseAddrPort
	tests := []struct {
		name string
		edit func(s *Spec)
		want string // "" = valid
	}{
		{"valid", func(*Spec) {}, ""},
		{"no services", func(s *Spec) { s.Services = nil }, `config: services: at least one service required`},
		{"no backends", func(s *Spec) { s.Services[0].Backends = nil }, `config: services[0].backends: at least one backend required`},
		{"no vip", func(s *Spec) { s.Services[0].VIP = netip.Addr{} }, `config: services[0].vip: address required`},
		{"ipv6 vip", func(s *Spec) { s.Services[0].VIP = a("2001:db8::1") }, `config: services[0].vip: "2001:db8::1": IPv6 not supported yet`},
		{"mapped vip", func(s *Spec) { s.Services[0].VIP = a("::ffff:198.18.0.100") }, `config: services[0].vip: "::ffff:198.18.0.100": IPv4-mapped IPv6 address (write it as IPv4)`},
		{"unspecified vip", func(s *Spec) { s.Services[0].VIP = a("0.0.0.0") }, `config: services[0].vip: "0.0.0.0": unspecified address not allowed`},
		{"multicast vip", func(s *Spec) { s.Services[0].VIP = a("224.0.0.1") }, `config: services[0].vip: "224.0.0.1": multicast address not allowed`},
		{"broadcast vip", func(s *Spec) { s.Services[0].VIP = a("255.255.255.255") }, `config: services[0].vip: "255.255.255.255": broadcast address not allowed`},
		{"loopback vip", func(s *Spec) { s.Services[0].VIP = a("127.0.0.1") }, `config: services[0].vip: "127.0.0.1": loopback address not allowed (not reachable through an interface)`},
		{"no ports", func(s *Spec) { s.Services[0].Ports = nil }, `config: services[0].ports: at least one port required`},
		{"port 0", func(s *Spec) { s.Services[0].Ports = []uint16{80, 0} }, `config: services[0].ports[1]: "0": invalid port`},
		{"duplicate port", func(s *Spec) { s.Services[0].Ports = []uint16{80, 443, 80} }, `config: services[0].ports[2]: "80": duplicate of services[0].ports[0]`},
		{"duplicate vip:port", func(s *Spec) {
			s.Services = append(s.Services, Service{Name: "api", VIP: a("198.18.0.100"), Ports: []uint16{8080, 80},
				Backends: []Backend{{Addr: ap("198.18.0.31:80"), Weight: 1}}})
		}, `config: services[1].ports[1]: "198.18.0.100:80": already used by services[0].ports[0]`},
		{"same port other vip", func(s *Spec) {
			s.Services = append(s.Services, Service{VIP: a("198.18.0.101"), Ports: []uint16{80},
				Backends: []Backend{{Addr: ap("198.18.0.21:8080"), Weight: 1}}})
		}, ""},
		{"bad mode", func(s *Spec) { s.Services[0].Mode = 9 }, `config: services[0].mode: "Mode(9)": unknown mode (want fullnat or dnat)`},
		{"scheduler rr", func(s *Spec) { s.Services[0].Scheduler = "rr" }, ""},
		{"scheduler wrr", func(s *Spec) { s.Services[0].Scheduler = "wrr" }, ""},
		{"scheduler lc", func(s *Spec) { s.Services[0].Scheduler = "lc" }, ""},
		{"scheduler random", func(s *Spec) { s.Services[0].Scheduler = "random" }, ""},
		{"scheduler sh", func(s *Spec) { s.Services[0].Scheduler = "sh" }, ""},
		{"scheduler maglev", func(s *Spec) { s.Services[0].Scheduler = "maglev" }, ""},
		{"scheduler unknown", func(s *Spec) { s.Services[0].Scheduler = "fastest" },
			`config: services[0].scheduler: "fastest": unknown scheduler (want rr, wrr, lc, random, sh or maglev)`},
		{"scheduler ipvs only", func(s *Spec) { s.Services[0].Scheduler = "wlc" },
			`config: services[0].scheduler: "wlc": unknown scheduler (want rr, wrr, lc, random, sh or maglev)`},
		{"scheduler case", func(s *Spec) { s.Services[0].Scheduler = "RR" },
			`config: services[0].scheduler: "RR": unknown scheduler (want rr, wrr, lc, random, sh or maglev)`},
		{"maint flows keep", func(s *Spec) { s.Services[0].MaintFlows = "keep" }, ""},
		{"maint flows reset", func(s *Spec) { s.Services[0].MaintFlows = "reset" }, ""},
		{"maint flows unknown", func(s *Spec) { s.Services[0].MaintFlows = "drop" },
			`config: services[0].maint_flows: "drop": unknown maint flows policy (want keep or reset)`},
		{"duplicate name", func(s *Spec) {
			s.Services = append(s.Services, Service{Name: "web", VIP: a("198.18.0.101"), Ports: []uint16{80},
				Backends: []Backend{{Addr: ap("198.18.0.21:8080"), Weight: 1}}})
		}, `config: services[1].name: "web": already used by services[0]`},
		{"default name collides", func(s *Spec) {
			s.Services[0].Name = "198.18.0.101:80"
			s.Services = append(s.Services, Service{VIP: a("198.18.0.101"), Ports: []uint16{80},
				Backends: []Backend{{Addr: ap("198.18.0.21:8080"), Weight: 1}}})
		}, `config: services[1].name: "198.18.0.101:80": already used by services[0]`},
		{"name with newline", func(s *Spec) { s.Services[0].Name = "a\nb" }, `config: services[0].name: "a\nb": name must be printable text`},
		{"backend no address", func(s *Spec) { s.Services[0].Backends[1].Addr = netip.AddrPort{} }, `config: services[0].backends[1]: address required`},
		{"backend ipv6", func(s *Spec) { s.Services[0].Backends[1].Addr = ap("[2001:db8::5]:80") }, `config: services[0].backends[1]: "[2001:db8::5]:80": IPv6 not supported yet`},
		{"backend broadcast", func(s *Spec) { s.Services[0].Backends[0].Addr = ap("255.255.255.255:0") }, `config: services[0].backends[0]: "255.255.255.255": broadcast address not allowed`},
		{"backend port on multi-port", func(s *Spec) { s.Services[0].Ports = []uint16{80, 443} },
			`config: services[0].backends[0]: "198.18.0.21:8080": port not allowed: the service has several ports, each goes to the same port on the backend`},
		{"duplicate backend", func(s *Spec) {
			s.Services[0].Backends = append(s.Services[0].Backends, Backend{Addr: ap("198.18.0.21:8080"), Weight: 1})
		}, `config: services[0].backends[2]: "198.18.0.21:8080": duplicate of services[0].backends[0]`},
		{"duplicate backend implicit port", func(s *Spec) {
			s.Services[0].Backends = append(s.Services[0].Backends, Backend{Addr: ap("198.18.0.22:80"), Weight: 1})
		}, `config: services[0].backends[2]: "198.18.0.22:80": duplicate of services[0].backends[1]`},
		{"same backend other port", func(s *Spec) {
			s.Services[0].Backends = append(s.Services[0].Backends, Backend{Addr: ap("198.18.0.21:8081"), Weight: 1})
		}, ""},
		{"backend is vip", func(s *Spec) { s.Services[0].Backends[1].Addr = ap("198.18.0.100:0") },
			`config: services[0].backends[1]: "198.18.0.100": backend is the service address itself (a forwarding loop)`},
		{"backend on vip other port", func(s *Spec) { s.Services[0].Backends[1].Addr = ap("198.18.0.100:8080") }, ""},
		{"weight 0", func(s *Spec) { s.Services[0].Backends[0].Weight = 0 }, ""},
		{"weight max", func(s *Spec) { s.Services[0].Backends[0].Weight = 65535 }, ""},
		{"weight high", func(s *Spec) { s.Services[0].Backends[0].Weight = 65536 }, `config: services[0].backends[0].weight: "65536": must be 0..65535`},
		{"weight negative", func(s *Spec) { s.Services[0].Backends[0].Weight = -1 }, `config: services[0].backends[0].weight: "-1": must be 0..65535`},
		{"state ready", func(s *Spec) { s.Services[0].Backends[0].State = "ready" }, ""},
		{"state drain", func(s *Spec) { s.Services[0].Backends[0].State = "drain" }, ""},
		{"state maint", func(s *Spec) { s.Services[0].Backends[1].State = "maint" }, ""},
		{"state all maint", func(s *Spec) { s.Services[0].Backends[0].State, s.Services[0].Backends[1].State = "maint", "maint" }, ""},
		{"state unknown", func(s *Spec) { s.Services[0].Backends[1].State = "down" },
			`config: services[0].backends[1].state: "down": unknown state (want ready, drain or maint)`},
		{"state case", func(s *Spec) { s.Services[0].Backends[0].State = "Drain" },
			`config: services[0].backends[0].state: "Drain": unknown state (want ready, drain or maint)`},
		{"health type unknown", func(s *Spec) { s.Services[0].Health = s.Health; s.Services[0].Health.Type = "icmp" },
			`config: services[0].health.type: "icmp": unknown health check type (want tcp, http or send-expect)`},
		{"health http", func(s *Spec) { s.Health.Type = "http" }, ""},
		{"health http full", func(s *Spec) {
			s.Health = Health{Type: "http", Interval: time.Second, Timeout: 100 * time.Millisecond, Rise: 1, Fall: 1,
				Path: "/healthz?deep=1&x=%20", Status: 599, Host: "www.example.org:8080"}
		}, ""},
		{"health http status 100", func(s *Spec) { s.Health.Type, s.Health.Status = "http", 100 }, ""},
		{"health http status low", func(s *Spec) { s.Health.Type, s.Health.Status = "http", 99 }, `config: health.status: "99": must be 100..599`},
		{"health http status high", func(s *Spec) { s.Health.Type, s.Health.Status = "http", 600 }, `config: health.status: "600": must be 100..599`},
		{"health http status negative", func(s *Spec) { s.Health.Type, s.Health.Status = "http", -200 }, `config: health.status: "-200": must be 100..599`},
		{"health http relative path", func(s *Spec) { s.Health.Type, s.Health.Path = "http", "healthz" }, `config: health.path: "healthz": must start with "/"`},
		{"health http path space", func(s *Spec) { s.Health.Type, s.Health.Path = "http", "/a b" },
			`config: health.path: "/a b": must be visible ASCII without spaces (percent-encode the rest)`},
		{"health http path newline", func(s *Spec) { s.Health.Type, s.Health.Path = "http", "/a\r\nX: y" },
			`config: health.path: "/a\r\nX: y": must be visible ASCII without spaces (percent-encode the rest)`},
		{"health http path utf-8", func(s *Spec) { s.Health.Type, s.Health.Path = "http", "/état" },
			`config: health.path: "/état": must be visible ASCII without spaces (percent-encode the rest)`},
		{"health http path long", func(s *Spec) { s.Health.Type, s.Health.Path = "http", "/"+strings.Repeat("a", 1024) },
			`config: health.path: "/` + strings.Repeat("a", 79) + `...": too long (at most 1024 bytes)`},
		{"health http host", func(s *Spec) { s.Health.Type, s.Health.Host = "http", "a b" },
			`config: health.host: "a b": must be a host name or address[:port], visible ASCII without spaces`},
		{"health http host long", func(s *Spec) { s.Health.Type, s.Health.Host = "http", strings.Repeat("h", 1025) },
			`config: health.host: "` + strings.Repeat("h", 80) + `...": too long (at most 1024 bytes)`},
		{"health send-expect", func(s *Spec) { s.Health.Type, s.Health.Send, s.Health.Expect = "send-expect", "HEALTH CHECK\r\n", "OK" }, ""},
		{"health banner", func(s *Spec) { s.Health.Type, s.Health.Expect = "send-expect", "220 " }, ""},
		{"health expect missing", func(s *Spec) { s.Health.Type, s.Health.Send = "send-expect", "PING\r\n" },
			`config: health.expect: required by type send-expect (the start of the reply)`},
		{"health send 1024", func(s *Spec) {
			s.Health.Type, s.Health.Send, s.Health.Expect = "send-expect", strings.Repeat("s", 1024), strings.Repeat("e", 1024)
		}, ""},
		{"health send long", func(s *Spec) {
			s.Health.Type, s.Health.Send, s.Health.Expect = "send-expect", strings.Repeat("s", 1025), "OK"
		},
			`config: health.send: "` + strings.Repeat("s", 80) + `...": too long (at most 1024 bytes)`},
		{"health expect long", func(s *Spec) { s.Health.Type, s.Health.Expect = "send-expect", strings.Repeat("e", 1025) },
			`config: health.expect: "` + strings.Repeat("e", 80) + `...": too long (at most 1024 bytes)`},
		{"health path on tcp", func(s *Spec) { s.Health.Path = "/healthz" }, `config: health.path: "/healthz": not used by type tcp (only by http)`},
		{"health status on tcp", func(s *Spec) { s.Health.Status = 200 }, `config: health.status: "200": not used by type tcp (only by http)`},
		{"health host on default type", func(s *Spec) { s.Health.Type, s.Health.Host = "", "example.org" },
			`config: health.host: "example.org": not used by type tcp (only by http)`},
		{"health send on http", func(s *Spec) {
			s.Services[0].Health = Health{Type: "http", Interval: time.Second, Timeout: time.Millisecond, Rise: 1, Fall: 1, Send: "x"}
		}, `config: services[0].health.send: "x": not used by type http (only by send-expect)`},
		{"health expect on tcp", func(s *Spec) { s.Health.Expect = "OK" }, `config: health.expect: "OK": not used by type tcp (only by send-expect)`},
		{"health path on send-expect", func(s *Spec) { s.Health.Type, s.Health.Expect, s.Health.Path = "send-expect", "OK", "/" },
			`config: health.path: "/": not used by type send-expect (only by http)`},
		{"health interval 0", func(s *Spec) { s.Health.Interval = 0 }, `config: health.interval: "0s": must be greater than 0`},
		{"health timeout negative", func(s *Spec) { s.Health.Timeout = -time.Second }, `config: health.timeout: "-1s": must be greater than 0`},
		{"health interval = timeout", func(s *Spec) { s.Health.Timeout = 2 * time.Second }, `config: health: interval 2s must be greater than timeout 2s`},
		{"health rise 0", func(s *Spec) { s.Health.Rise = 0 }, `config: health.rise: "0": must be at least 1`},
		{"health fall 0", func(s *Spec) { s.Services[0].Health = s.Health; s.Services[0].Health.Fall = 0 }, `config: services[0].health.fall: "0": must be at least 1`},
		{"health passive off", func(s *Spec) { s.Health.Passive = 0 }, ""},
		{"health passive max", func(s *Spec) { s.Health.Passive = 10000 }, ""},
		{"health passive high", func(s *Spec) { s.Health.Passive = 10001 }, `config: health.passive: "10001": must be 0..10000 (0 = off)`},
		{"health passive negative", func(s *Spec) { s.Services[0].Health = s.Health; s.Services[0].Health.Passive = -1 },
			`config: services[0].health.passive: "-1": must be 0..10000 (0 = off)`},
		{"timeout syn 0", func(s *Spec) { s.Timeouts.SYN = 0 }, `config: timeouts.syn: "0s": must be greater than 0`},
		{"timeout established", func(s *Spec) { s.Timeouts.Established = -1 }, `config: timeouts.established: "-1ns": must be greater than 0`},
		{"timeout fin", func(s *Spec) { s.Timeouts.FIN = 0 }, `config: timeouts.fin: "0s": must be greater than 0`},
		{"timeout time_wait", func(s *Spec) { s.Timeouts.TimeWait = 0 }, `config: timeouts.time_wait: "0s": must be greater than 0`},
		{"timeout close", func(s *Spec) { s.Timeouts.Close = 0 }, `config: timeouts.close: "0s": must be greater than 0`},
		{"max_conns 0", func(s *Spec) { s.MaxConns = 0 }, `config: max_conns: "0": must be 1..67108864`},
		{"max_conns max", func(s *Spec) { s.MaxConns = 1 << 26 }, ""},
		{"max_conns high", func(s *Spec) { s.MaxConns = 1<<26 + 1 }, `config: max_conns: "67108865": must be 1..67108864`},
		{"workers", func(s *Spec) { s.Workers = 1024 }, ""},
		{"workers high", func(s *Spec) { s.Workers = 1025 }, `config: workers: "1025": must be 0..1024 (0 = one per CPU)`},
		{"workers negative", func(s *Spec) { s.Workers = -1 }, `config: workers: "-1": must be 0..1024 (0 = one per CPU)`},
		{"log level", func(s *Spec) { s.LogLevel = slog.LevelInfo + 2 }, `config: log.level: "INFO+2": unknown log level (want debug, info, warn or error)`},
		{"log format", func(s *Spec) { s.LogFormat = "xml" }, `config: log.format: "xml": unknown log format (want text or json)`},
		{"api off", func(s *Spec) { s.API = "off" }, ""},
		{"api empty is default", func(s *Spec) { s.API = "" }, ""},
		{"api any", func(s *Spec) { s.API = "0.0.0.0:9478" }, ""},
		{"api lan", func(s *Spec) { s.API = "198.18.0.2:80" }, ""},
		{"api ipv6 loopback", func(s *Spec) { s.API = "[::1]:9478" }, ""},
		{"api ipv6 any", func(s *Spec) { s.API = "[::]:1" }, ""},
		{"api port max", func(s *Spec) { s.API = "127.0.0.1:65535" }, ""},
		{"api name", func(s *Spec) { s.API = "localhost:9478" }, `config: api: "localhost:9478": invalid address (want IP:PORT or off)`},
		{"api off case", func(s *Spec) { s.API = "OFF" }, `config: api: "OFF": invalid address (want IP:PORT or off)`},
		{"api no port", func(s *Spec) { s.API = "127.0.0.1" }, `config: api: "127.0.0.1": port required (IP:PORT or off)`},
		{"api ipv6 no port", func(s *Spec) { s.API = "[::1]" }, `config: api: "[::1]": port required (IP:PORT or off)`},
		{"api ipv6 bare", func(s *Spec) { s.API = "::1" }, `config: api: "::1": port required (IP:PORT or off)`},
		{"api port only", func(s *Spec) { s.API = ":9478" }, `config: api: ":9478": invalid address (want IP:PORT or off)`},
		{"api port 0", func(s *Spec) { s.API = "127.0.0.1:0" }, `config: api: "127.0.0.1:0": invalid port`},
		{"api port high", func(s *Spec) { s.API = "[::1]:65536" }, `config: api: "[::1]:65536": invalid port`},
		{"api port text", func(s *Spec) { s.API = "127.0.0.1:http" }, `config: api: "127.0.0.1:http": invalid port`},
		{"api multicast", func(s *Spec) { s.API = "224.0.0.1:9478" }, `config: api: "224.0.0.1:9478": multicast address not allowed`},
		{"api ipv6 multicast", func(s *Spec) { s.API = "[ff02::1]:9478" }, `config: api: "[ff02::1]:9478": multicast address not allowed`},
		{"api broadcast", func(s *Spec) { s.API = "255.255.255.255:9478" }, `config: api: "255.255.255.255:9478": broadcast address not allowed`},
		{"nat ports reversed", func(s *Spec) { s.NATPorts = PortRange{Lo: 5000, Hi: 4000} }, `config: nat_ports: "5000-4000": low port above high port`},
		{"nat ports low", func(s *Spec) { s.NATPorts = PortRange{Lo: 1023, Hi: 4000} }, `config: nat_ports: "1023-4000": must start at 1024 or above`},
		{"nat ports 1024", func(s *Spec) { s.NATPorts = PortRange{Lo: 1024, Hi: 1024} }, ""},
		{"nat ports cover vip port", func(s *Spec) {
			s.SNAT = []netip.Addr{a("198.18.0.100")}
			s.NATPorts = PortRange{Lo: 1024, Hi: 65535}
			s.Services[0].Ports = []uint16{80, 8080}
			s.Services[0].Backends = []Backend{{Addr: ap("198.18.0.21:0"), Weight: 1}}
		}, `config: nat_ports: "1024-65535": includes services[0].ports[1], a service port on an snat address`},
		{"nat ports other snat", func(s *Spec) {
			s.SNAT = []netip.Addr{a("198.18.0.2")}
			s.NATPorts = PortRange{Lo: 1024, Hi: 65535}
		}, ""},
		{"snat ipv6", func(s *Spec) { s.SNAT = []netip.Addr{a("2001:db8::1")} }, `config: snat[0]: "2001:db8::1": IPv6 not supported yet`},
		{"snat invalid", func(s *Spec) { s.SNAT = []netip.Addr{{}} }, `config: snat[0]: invalid address`},
		{"snat duplicate", func(s *Spec) { s.SNAT = []netip.Addr{a("198.18.0.2"), a("198.18.0.3"), a("198.18.0.2")} }, `config: snat[2]: "198.18.0.2": duplicate of snat[0]`},
		{"iface ok", func(s *Spec) { s.Interfaces = []string{"eth0", "veth-l4t.12345"} }, ""},
		{"iface empty", func(s *Spec) { s.Interfaces = []string{""} }, `config: interfaces[0]: "": invalid interface name`},
		{"iface long", func(s *Spec) { s.Interfaces = []string{"abcdefghijklmnop"} }, `config: interfaces[0]: "abcdefghijklmnop": invalid interface name`},
		{"iface slash", func(s *Spec) { s.Interfaces = []string{"eth0", "a/b"} }, `config: interfaces[1]: "a/b": invalid interface name`},
		{"iface space", func(s *Spec) { s.Interfaces = []string{"a b"} }, `config: interfaces[0]: "a b": invalid interface name`},
		{"iface dot", func(s *Spec) { s.Interfaces = []string{".."} }, `config: interfaces[0]: "..": invalid interface name`},
		{"iface duplicate", func(s *Spec) { s.Interfaces = []string{"eth0", "eth0"} }, `config: interfaces[1]: "eth0": duplicate of interfaces[0]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validSpec()
			tt.edit(&s)
			err := s.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Fatalf("Validate() = %v\nwant        %s", err, tt.want)
			}
		})
	}
}

func TestValidateNotSupported(t *testing.T) {
	for _, edit := range []func(*Spec){
		func(s *Spec) { s.Services[0].VIP = netip.MustParseAddr("2001:db8::1") },
		func(s *Spec) { s.Services[0].Backends[0].Addr = netip.MustParseAddrPort("[2001:db8::2]:80") },
	} {
		s := validSpec()
		edit(&s)
		if err := s.Validate(); !errors.Is(err, ErrNotSupported) {
			t.Errorf("Validate() = %v, want an error wrapping ErrNotSupported", err)
		}
	}
	for _, edit := range []func(*Spec){
		func(s *Spec) { s.Services[0].Scheduler = "rrr" },
		func(s *Spec) { s.Services[0].Scheduler = "mh" }, // once reserved, now unknown
		func(s *Spec) { s.Health.Type = "icmp" },
	} {
		s := validSpec()
		edit(&s)
		if err := s.Validate(); err == nil || errors.Is(err, ErrNotSupported) {
			t.Errorf("Validate() = %v, want an error not wrapping ErrNotSupported", err)
		}
	}
}

func TestValidateFillsDefaults(t *testing.T) {
	s := Spec{
		MaxConns: 10,
		Timeouts: DefaultTimeouts(),
		Services: []Service{
			{VIP: netip.MustParseAddr("198.18.0.100"), Ports: []uint16{443, 80},
				Backends: []Backend{{Addr: netip.MustParseAddrPort("198.18.0.21:0")}}},
			{VIP: netip.MustParseAddr("198.18.0.101"), Ports: []uint16{80}, Health: Health{Interval: time.Second, Timeout: time.Millisecond, Rise: 1, Fall: 1},
				Backends: []Backend{{Addr: netip.MustParseAddrPort("198.18.0.21:0")}}},
		},
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if s.LogFormat != "text" || s.Health != DefaultHealth() || s.API != DefaultAPI {
		t.Errorf("spec defaults: log format %q, health %+v, api %q", s.LogFormat, s.Health, s.API)
	}
	s0, s1 := s.Services[0], s.Services[1]
	if s0.Name != "198.18.0.100:443" || s0.Scheduler != "rr" || s0.MaintFlows != MaintFlowsKeep || s0.Mode != ModeFullNAT ||
		s0.Health != DefaultHealth() || s0.Health.Passive != DefaultPassive || s0.Backends[0].State != StateReady {
		t.Errorf("service 0 defaults: %+v", s0)
	}
	// A hand-built Health without Passive has passive checks off.
	if s1.Health.Type != "tcp" || s1.Health.Interval != time.Second || s1.Health.Passive != 0 {
		t.Errorf("service 1 keeps its own health: %+v", s1.Health)
	}
	// The http check's path and status default.
	h := Spec{MaxConns: 10, Timeouts: DefaultTimeouts(), Health: DefaultHealth(), Services: []Service{s1}}
	h.Health.Type = HealthHTTP
	h.Services[0].Health = Health{}
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	want := DefaultHealth()
	want.Type, want.Path, want.Status = "http", "/", 200
	if h.Health != want || h.Services[0].Health != want {
		t.Errorf("http defaults: %+v, service %+v; want %+v", h.Health, h.Services[0].Health, want)
	}
	// A hand-built Backend keeps weight 0: quiescent, not defaulted.
	if s0.Backends[0].Weight != 0 {
		t.Errorf("weight = %d, want 0", s0.Backends[0].Weight)
	}
	// Validating twice changes nothing.
	before := s.Services[0]
	if err := s.Validate(); err != nil || s.Services[0].Name != before.Name {
		t.Errorf("second Validate: %v, %+v", err, s.Services[0])
	}
}

func TestValidateErrorsAreOneLine(t *testing.T) {
	s := validSpec()
	s.Services[0].Name = strings.Repeat("x\n", 200)
	err := s.Validate()
	if err == nil || strings.ContainsAny(err.Error(), "\n\r") || len(err.Error()) > 300 {
		t.Fatalf("Validate() = %q, want a short single line", err)
	}
}

func TestVIPARP(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{"", VIPARPAuto, ""}, {"auto", VIPARPAuto, ""}, {"on", VIPARPOn, ""}, {"off", VIPARPOff, ""},
		{"yes", "", `config: t.yaml:1: vip_arp: "yes": want auto, on or off`},
	} {
		doc := "vip_arp: " + c.in + "\nservices:\n  - vip: 198.18.0.100\n    port: 80\n    backends: [198.18.0.21]\n"
		if c.in == "" {
			doc = "services:\n  - vip: 198.18.0.100\n    port: 80\n    backends: [198.18.0.21]\n"
		}
		s, err := Parse("t.yaml", []byte(doc))
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("%q: %v, want %s", c.in, err, c.err)
			}
			continue
		}
		if err != nil || s.VIPARP != c.want {
			t.Errorf("%q: %v %q", c.in, err, s.VIPARP)
		}
	}
	f := DefaultFlags()
	f.VIP, f.Backends, f.VIPARP = "198.18.0.100:80", []string{"198.18.0.21"}, "maybe"
	if _, err := FromFlags(f); err == nil || err.Error() != `config: --vip-arp "maybe": want auto, on or off` {
		t.Errorf("flag: %v", err)
	}
}
