package config

import (
	"net/netip"
	"testing"
)

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    Mode
		wantErr string
	}{
		{in: "fullnat", want: ModeFullNAT},
		{in: "dnat", want: ModeDNAT},
		{in: "DNAT", want: ModeDNAT},
		{in: "snat", wantErr: `config: mode "snat": unknown mode (want fullnat or dnat)`},
		{in: "", wantErr: `config: mode "": unknown mode (want fullnat or dnat)`},
	}
	for _, tt := range tests {
		got, err := ParseMode(tt.in)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("ParseMode(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseMode(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if got.String() != map[Mode]string{ModeFullNAT: "fullnat", ModeDNAT: "dnat"}[tt.want] {
			t.Errorf("%v.String() = %q", tt.want, got.String())
		}
	}
	if got := Mode(7).String(); got != "Mode(7)" {
		t.Errorf("Mode(7).String() = %q", got)
	}
}

func TestParsePortRange(t *testing.T) {
	tests := []struct {
		in      string
		want    PortRange
		str     string
		n       int
		wantErr string
	}{
		{in: "61000-65535", want: PortRange{Lo: 61000, Hi: 65535}, str: "61000-65535", n: 4536},
		{in: " 2000 - 2001 ", want: PortRange{Lo: 2000, Hi: 2001}, str: "2000-2001", n: 2},
		{in: "8080", want: PortRange{Lo: 8080, Hi: 8080}, str: "8080", n: 1},
		{in: "auto", want: PortRange{}, str: "auto", n: 0},
		// Bounds are Validate's business, so a reversed range parses.
		{in: "3000-2000", want: PortRange{Lo: 3000, Hi: 2000}, str: "3000-2000", n: 0},
		{in: "0-10", wantErr: `config: port range "0-10": invalid port range (want LO-HI, a single port or auto)`},
		{in: "1-65536", wantErr: `config: port range "1-65536": invalid port range (want LO-HI, a single port or auto)`},
		{in: "-5", wantErr: `config: port range "-5": invalid port range (want LO-HI, a single port or auto)`},
		{in: "+5", wantErr: `config: port range "+5": invalid port range (want LO-HI, a single port or auto)`},
		{in: "1-2-3", wantErr: `config: port range "1-2-3": invalid port range (want LO-HI, a single port or auto)`},
		{in: "", wantErr: `config: port range "": invalid port range (want LO-HI, a single port or auto)`},
	}
	for _, tt := range tests {
		got, err := ParsePortRange(tt.in)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("ParsePortRange(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want || formatPortRange(got) != tt.str || got.Len() != tt.n {
			t.Errorf("ParsePortRange(%q) = %v (%q, len %d), %v; want %v (%q, len %d)",
				tt.in, got, formatPortRange(got), got.Len(), err, tt.want, tt.str, tt.n)
		}
	}
	r := PortRange{Lo: 100, Hi: 200}
	for p, want := range map[uint16]bool{99: false, 100: true, 150: true, 200: true, 201: false} {
		if r.Contains(p) != want {
			t.Errorf("%v.Contains(%d) = %v", r, p, !want)
		}
	}
	if (PortRange{}).Contains(0) {
		t.Error("the zero range contains port 0")
	}
}

func TestBackendTarget(t *testing.T) {
	svc := Service{VIP: netip.MustParseAddr("198.18.0.100"), Ports: []uint16{80, 443}}
	tests := []struct {
		b      Backend
		port   uint16
		health uint16
		target string
		check  string
	}{
		{b: Backend{Addr: netip.MustParseAddrPort("198.18.0.21:0")}, port: 443, target: "198.18.0.21:443", check: "198.18.0.21:80"},
		{b: Backend{Addr: netip.MustParseAddrPort("198.18.0.21:8080")}, port: 80, target: "198.18.0.21:8080", check: "198.18.0.21:8080"},
		{b: Backend{Addr: netip.MustParseAddrPort("198.18.0.21:0")}, port: 80, health: 9000, target: "198.18.0.21:80", check: "198.18.0.21:9000"},
	}
	for _, tt := range tests {
		s := svc
		s.Health.Port = tt.health
		if got := tt.b.Target(tt.port).String(); got != tt.target {
			t.Errorf("%v.Target(%d) = %s, want %s", tt.b.Addr, tt.port, got, tt.target)
		}
		if got := s.CheckAddr(tt.b).String(); got != tt.check {
			t.Errorf("CheckAddr(%v) with health port %d = %s, want %s", tt.b.Addr, tt.health, got, tt.check)
		}
	}
}
