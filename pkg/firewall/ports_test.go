package firewall

import (
	"encoding/json"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

func TestParsePortRange(t *testing.T) {
	tests := []struct {
		in      string
		want    PortRange
		wantErr string // substring; "" means success
	}{
		{in: "80", want: PortRange{Lo: 80, Hi: 80}},
		{in: "61000-65535", want: PortRange{Lo: 61000, Hi: 65535}},
		{in: "1", want: PortRange{Lo: 1, Hi: 1}},
		{in: "65535", want: PortRange{Lo: 65535, Hi: 65535}},
		{in: "1-65535", want: PortRange{Lo: 1, Hi: 65535}},
		{in: "443-443", want: PortRange{Lo: 443, Hi: 443}},
		{in: "080", want: PortRange{Lo: 80, Hi: 80}},
		{in: "", wantErr: `bad port ""`},
		{in: "0", wantErr: "port 0 is not a tcp port"},
		{in: "0-10", wantErr: "port 0 is not a tcp port"},
		{in: "65536", wantErr: "above 65535"},
		{in: "90-80", wantErr: "low end above high end"},
		{in: "80-", wantErr: `bad port ""`},
		{in: "-80", wantErr: `bad port ""`},
		{in: "+80", wantErr: `bad port "+80"`},
		{in: " 80", wantErr: `bad port " 80"`},
		{in: "80:90", wantErr: `bad port "80:90"`},
		{in: "1-2-3", wantErr: `bad port "2-3"`},
		{in: "http", wantErr: `bad port "http"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePortRange(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParsePortRange(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "firewall: port range ") {
					t.Errorf("error %q does not name the operation", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParsePortRange(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestPortRangeString(t *testing.T) {
	tests := []struct {
		r    PortRange
		want string
		len  int
	}{
		{PortRange{Lo: 80, Hi: 80}, "80", 1},
		{PortRange{Lo: 61000, Hi: 65535}, "61000-65535", 4536},
		{PortRange{Lo: 1, Hi: 65535}, "1-65535", 65535},
		{PortRange{Lo: 0, Hi: 0}, "0", 0}, // the zero value: no range
		{PortRange{Lo: 9, Hi: 8}, "9-8", 0},
	}
	for _, tt := range tests {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.r, got, tt.want)
		}
		if got := tt.r.Len(); got != tt.len {
			t.Errorf("%#v.Len() = %d, want %d", tt.r, got, tt.len)
		}
	}
	r := PortRange{Lo: 100, Hi: 200}
	for p, want := range map[uint16]bool{99: false, 100: true, 150: true, 200: true, 201: false} {
		if got := r.Contains(p); got != want {
			t.Errorf("%v.Contains(%d) = %v, want %v", r, p, got, want)
		}
	}
}

func TestPortRangeText(t *testing.T) {
	in := struct{ NAT PortRange }{PortRange{Lo: 61000, Hi: 65535}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"NAT":"61000-65535"}` {
		t.Fatalf("json = %s", b)
	}
	var out struct{ NAT PortRange }
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Fatalf("round trip = %v, %v; want %v", out, err, in)
	}
	if err := json.Unmarshal([]byte(`{"NAT":"70000"}`), &out); err == nil {
		t.Fatal("70000 accepted")
	}
	if _, err := json.Marshal(struct{ P PortRange }{PortRange{Lo: 5, Hi: 4}}); err == nil {
		t.Fatal("inverted range marshalled")
	}
}

func FuzzParsePortRange(f *testing.F) {
	for _, s := range []string{"80", "61000-65535", "0", "1-", "65536", "9-8", "+1", "1-2-3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParsePortRange(s)
		if err != nil {
			return
		}
		if r.Lo == 0 || r.Lo > r.Hi {
			t.Fatalf("ParsePortRange(%q) = %v: invalid range accepted", s, r)
		}
		back, err := ParsePortRange(r.String())
		if err != nil || back != r {
			t.Fatalf("round trip %q -> %v -> %q -> %v, %v", s, r, r.String(), back, err)
		}
	})
}

func kernelFS(portRange, reserved string) fstest.MapFS {
	m := fstest.MapFS{}
	if portRange != "-" {
		m[localPortRangeFile] = &fstest.MapFile{Data: []byte(portRange)}
	}
	if reserved != "-" {
		m[localReservedPortFile] = &fstest.MapFile{Data: []byte(reserved)}
	}
	return m
}

func TestReadKernelPorts(t *testing.T) {
	tests := []struct {
		name         string
		rng, rsv     string // file contents; "-" means the file is missing
		wantEph      PortRange
		wantReserved []PortRange
		wantErr      string
		wantNotExist bool
	}{
		{name: "kernel default", rng: "32768\t60999\n", rsv: "\n", wantEph: PortRange{Lo: 32768, Hi: 60999}},
		{name: "empty reserved", rng: "32768\t60999\n", rsv: "", wantEph: PortRange{Lo: 32768, Hi: 60999}},
		{name: "reserved list", rng: "1024\t65535\n", rsv: "8080,61000-65535\n",
			wantEph: PortRange{Lo: 1024, Hi: 65535}, wantReserved: []PortRange{{Lo: 8080, Hi: 8080}, {Lo: 61000, Hi: 65535}}},
		{name: "reserved port 0", rng: "32768 60999", rsv: "0", wantEph: PortRange{Lo: 32768, Hi: 60999}, wantReserved: []PortRange{{Lo: 0, Hi: 0}}},
		{name: "spaces", rng: "  40000   50000  \n", rsv: " 1-2 , 3 \n", wantEph: PortRange{Lo: 40000, Hi: 50000}, wantReserved: []PortRange{{Lo: 1, Hi: 2}, {Lo: 3, Hi: 3}}},
		{name: "no range file", rng: "-", rsv: "", wantErr: "firewall: read kernel ports: ", wantNotExist: true},
		{name: "no reserved file", rng: "1 2", rsv: "-", wantErr: "firewall: read kernel ports: ", wantNotExist: true},
		{name: "one number", rng: "32768\n", rsv: "", wantErr: `ip_local_port_range "32768\n": want two ports`},
		{name: "three numbers", rng: "1 2 3", rsv: "", wantErr: "want two ports"},
		{name: "inverted", rng: "60999 32768", rsv: "", wantErr: "low end above high end"},
		{name: "port 0", rng: "0 60999", rsv: "", wantErr: `ip_local_port_range "0 60999": port range 0-60999: port 0 is not a tcp port`},
		{name: "garbage", rng: "a b", rsv: "", wantErr: `bad port "a"`},
		{name: "too big", rng: "1 70000", rsv: "", wantErr: "above 65535"},
		{name: "bad reserved", rng: "1 2", rsv: "8080,x\n", wantErr: `ip_local_reserved_ports "8080,x": bad port "x"`},
		{name: "trailing comma", rng: "1 2", rsv: "8080,", wantErr: `bad port ""`},
		{name: "inverted reserved", rng: "1 2", rsv: "9-8", wantErr: "low end above high end"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eph, rsv, err := ReadKernelPorts(kernelFS(tt.rng, tt.rsv))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				if got := errors.Is(err, fs.ErrNotExist); got != tt.wantNotExist {
					t.Errorf("errors.Is(%v, fs.ErrNotExist) = %v", err, got)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error %q is not one line", err)
				}
				return
			}
			if err != nil || eph != tt.wantEph || !slices.Equal(rsv, tt.wantReserved) {
				t.Fatalf("got %v %v %v; want %v %v", eph, rsv, err, tt.wantEph, tt.wantReserved)
			}
		})
	}
}

func FuzzReadKernelPorts(f *testing.F) {
	f.Add("32768\t60999\n", "\n")
	f.Add("1024 65535", "8080,61000-65535\n")
	f.Add("1 2 3", "9-8,")
	f.Fuzz(func(t *testing.T, rng, rsv string) {
		eph, reserved, err := ReadKernelPorts(fstest.MapFS{
			localPortRangeFile:    &fstest.MapFile{Data: []byte(rng)},
			localReservedPortFile: &fstest.MapFile{Data: []byte(rsv)},
		})
		if err != nil {
			return
		}
		if eph.Lo > eph.Hi {
			t.Fatalf("ephemeral %v inverted", eph)
		}
		for _, r := range reserved {
			if r.Lo > r.Hi {
				t.Fatalf("reserved %v inverted", r)
			}
		}
		// Whatever the kernel files say, the derived checks must not panic and
		// must agree with each other.
		nat, err := DefaultNATRange(eph, reserved)
		if err != nil {
			return
		}
		if nat.Len() < MinNATPorts || nat.Hi != 65535 {
			t.Fatalf("DefaultNATRange(%v, %v) = %v", eph, reserved, nat)
		}
		if err := CheckNATRange(nat, eph, reserved); err != nil {
			t.Fatalf("default range %v fails its own check: %v", nat, err)
		}
	})
}

func TestDefaultNATRange(t *testing.T) {
	tests := []struct {
		name     string
		eph      PortRange
		reserved []PortRange
		want     PortRange
		wantErr  string
	}{
		{name: "kernel default", eph: PortRange{Lo: 32768, Hi: 60999}, want: PortRange{Lo: 61000, Hi: 65535}},
		{name: "reserved elsewhere", eph: PortRange{Lo: 32768, Hi: 60999}, reserved: []PortRange{{Lo: 8080, Hi: 8080}}, want: PortRange{Lo: 61000, Hi: 65535}},
		{name: "exactly 1024", eph: PortRange{Lo: 32768, Hi: 64511}, want: PortRange{Lo: 64512, Hi: 65535}},
		{name: "reserved top of ephemeral", eph: PortRange{Lo: 1024, Hi: 65535}, reserved: []PortRange{{Lo: 61000, Hi: 65535}}, want: PortRange{Lo: 61000, Hi: 65535}},
		{name: "reserved top in pieces", eph: PortRange{Lo: 1024, Hi: 65535}, reserved: []PortRange{{Lo: 64000, Hi: 65535}, {Lo: 8080, Hi: 8080}, {Lo: 60000, Hi: 63999}},
			want: PortRange{Lo: 60000, Hi: 65535}},
		{name: "reserved pieces overlapping", eph: PortRange{Lo: 1024, Hi: 65535}, reserved: []PortRange{{Lo: 62000, Hi: 65535}, {Lo: 61000, Hi: 63000}},
			want: PortRange{Lo: 61000, Hi: 65535}},
		{name: "all reserved", eph: PortRange{Lo: 32768, Hi: 60999}, reserved: []PortRange{{Lo: 1, Hi: 65535}}, want: PortRange{Lo: 32768, Hi: 65535}},
		{name: "hole below top", eph: PortRange{Lo: 1024, Hi: 65535}, reserved: []PortRange{{Lo: 65000, Hi: 65534}},
			wantErr: "firewall: only 0 ports above the kernel's ephemeral ports 1024-65535 (need 1024): set --nat-ports LO-HI and reserve it with sysctl -w net.ipv4.ip_local_reserved_ports=LO-HI"},
		{name: "too few", eph: PortRange{Lo: 32768, Hi: 65000}, wantErr: "only 535 ports above the kernel's ephemeral ports 32768-65000"},
		{name: "one short", eph: PortRange{Lo: 32768, Hi: 64512}, wantErr: "only 1023 ports"},
		{name: "inverted", eph: PortRange{Lo: 2, Hi: 1}, wantErr: "firewall: ephemeral ports: port range 2-1: low end above high end"},
		{name: "port 0", eph: PortRange{Lo: 0, Hi: 60999}, wantErr: "port 0 is not a tcp port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DefaultNATRange(tt.eph, tt.reserved)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("DefaultNATRange = %v, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("DefaultNATRange = %v, %v; want %v", got, err, tt.want)
			}
			if err := CheckNATRange(got, tt.eph, tt.reserved); err != nil {
				t.Errorf("default range fails CheckNATRange: %v", err)
			}
		})
	}
}

func TestCheckNATRange(t *testing.T) {
	def := PortRange{Lo: 32768, Hi: 60999}
	tests := []struct {
		name     string
		nat, eph PortRange
		reserved []PortRange
		wantErr  string
	}{
		{name: "above", nat: PortRange{Lo: 61000, Hi: 65535}, eph: def},
		{name: "below", nat: PortRange{Lo: 20000, Hi: 32767}, eph: def},
		{name: "single port clear", nat: PortRange{Lo: 61000, Hi: 61000}, eph: def},
		{name: "overlap reserved", nat: PortRange{Lo: 40000, Hi: 45000}, eph: def, reserved: []PortRange{{Lo: 40000, Hi: 45000}}},
		{name: "overlap reserved in pieces", nat: PortRange{Lo: 40000, Hi: 45000}, eph: def,
			reserved: []PortRange{{Lo: 43000, Hi: 46000}, {Lo: 8080, Hi: 8080}, {Lo: 39000, Hi: 42999}}},
		{name: "only the overlapping part reserved", nat: PortRange{Lo: 60000, Hi: 65535}, eph: def, reserved: []PortRange{{Lo: 60000, Hi: 60999}}},
		{name: "overlap", nat: PortRange{Lo: 40000, Hi: 45000}, eph: def,
			wantErr: "firewall: nat ports 40000-45000 overlap the kernel's ephemeral ports 32768-60999: pick ports outside it or reserve them with sysctl -w net.ipv4.ip_local_reserved_ports=40000-45000"},
		{name: "overlap keeps existing reservations", nat: PortRange{Lo: 40000, Hi: 45000}, eph: def, reserved: []PortRange{{Lo: 8080, Hi: 8080}, {Lo: 40000, Hi: 44999}},
			wantErr: "sysctl -w net.ipv4.ip_local_reserved_ports=8080,40000-44999,40000-45000"},
		{name: "edge low", nat: PortRange{Lo: 30000, Hi: 32768}, eph: def, wantErr: "nat ports 30000-32768 overlap"},
		{name: "edge high", nat: PortRange{Lo: 60999, Hi: 65535}, eph: def, wantErr: "nat ports 60999-65535 overlap"},
		{name: "gap in reservation", nat: PortRange{Lo: 40000, Hi: 45000}, eph: def, reserved: []PortRange{{Lo: 40000, Hi: 41000}, {Lo: 41002, Hi: 45000}}, wantErr: "overlap"},
		{name: "inverted", nat: PortRange{Lo: 5, Hi: 4}, eph: def, wantErr: "firewall: nat ports: port range 5-4: low end above high end"},
		{name: "port 0", nat: PortRange{Lo: 0, Hi: 4}, eph: def, wantErr: "port 0 is not a tcp port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckNATRange(tt.nat, tt.eph, tt.reserved)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
}
