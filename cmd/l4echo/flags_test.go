package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
)

func noDial(context.Context, string, string) (net.Conn, error) {
	panic("a command with bad flags must not dial")
}

func TestFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // a substring of the one-line error: the offending value
	}{
		{"no command", nil, "usage: l4echo"},
		{"unknown command", []string{"fetch"}, `unknown command "fetch"`},
		{"unknown flag", []string{"get", "--url", "http://198.18.0.1/", "--bogus"}, "-bogus"},
		{"get no url", []string{"get"}, `--url "": is required`},
		{"get bad scheme", []string{"get", "--url", "https://198.18.0.1/"}, `--url "https://198.18.0.1/": scheme must be http`},
		{"get no host", []string{"get", "--url", "http:///x"}, "no host"},
		{"get bad port", []string{"get", "--url", "http://198.18.0.1:99999/"}, `bad port "99999"`},
		{"get count word", []string{"get", "--url", "http://198.18.0.1/", "--count", "ten"}, `"ten"`},
		{"get count zero", []string{"get", "--url", "http://198.18.0.1/", "--count", "0"}, "--count 0"},
		{"get parallel negative", []string{"get", "--url", "http://198.18.0.1/", "--parallel", "-1"}, "--parallel -1"},
		{"get timeout unit", []string{"get", "--url", "http://198.18.0.1/", "--timeout", "2"}, `"2"`},
		{"get timeout zero", []string{"get", "--url", "http://198.18.0.1/", "--timeout", "0s"}, "--timeout 0s"},
		{"get extra arg", []string{"get", "--url", "http://198.18.0.1/", "now"}, `unexpected argument "now"`},
		{"download no bytes", []string{"download", "--url", "http://198.18.0.1/"}, "--bytes 0"},
		{"download bad unit", []string{"download", "--url", "http://198.18.0.1/", "--bytes", "12XB"}, `unknown unit "XB"`},
		{"download too big", []string{"download", "--url", "http://198.18.0.1/", "--bytes", "2TiB"}, `"2TiB"`},
		{"download bad seed", []string{"download", "--url", "http://198.18.0.1/", "--bytes", "1", "--seed", "-3"}, `"-3"`},
		{"upload no url", []string{"upload", "--bytes", "1MiB"}, `--url ""`},
		{"connect no port", []string{"connect", "--addr", "198.18.0.1"}, `--addr "198.18.0.1"`},
		{"connect hostname", []string{"connect", "--addr", "lb:80"}, `--addr "lb:80"`},
		{"connect timeout", []string{"connect", "--addr", "198.18.0.1:80", "--timeout", "-1s"}, "--timeout -1s"},
		{"serve bad listen", []string{"serve", "--listen", "8080", "--name", "be1"}, `--listen "8080"`},
		{"serve empty name", []string{"serve", "--name", ""}, `--name ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			e := env{ctx: t.Context(), stdout: &stdout, stderr: &stderr, dial: noDial}
			if code := run(e, tt.args); code != exitUsage {
				t.Fatalf("exit code %d, want %d (stderr %q)", code, exitUsage, stderr.String())
			}
			msg := stderr.String()
			if !strings.Contains(msg, tt.want) {
				t.Fatalf("stderr %q does not name %q", msg, tt.want)
			}
			if tt.args != nil && strings.Count(msg, "\n") != 1 {
				t.Fatalf("stderr is not one line: %q", msg)
			}
			if len(tt.args) > 1 && !strings.HasPrefix(msg, "l4echo "+tt.args[0]+": ") {
				t.Fatalf("stderr %q does not start with the command", msg)
			}
		})
	}
}

func TestHelpExitsZero(t *testing.T) {
	for _, cmd := range []string{"serve", "get", "download", "upload", "connect"} {
		var stdout, stderr bytes.Buffer
		e := env{ctx: t.Context(), stdout: &stdout, stderr: &stderr, dial: noDial}
		if code := run(e, []string{cmd, "-h"}); code != exitOK {
			t.Errorf("%s -h: exit code %d", cmd, code)
		}
		if !strings.Contains(stdout.String(), "usage: l4echo "+cmd) {
			t.Errorf("%s -h: no usage on stdout: %q", cmd, stdout.String())
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0", 0, true},
		{"1048576", 1 << 20, true},
		{"64KiB", 64 << 10, true},
		{"64kib", 64 << 10, true},
		{"256MiB", 256 << 20, true},
		{"1G", 1e9, true},
		{"1GB", 1e9, true},
		{"3GiB", 3 << 30, true},
		{"1TiB", 1 << 40, true},
		{"10b", 10, true},
		{"", 0, false},
		{"MiB", 0, false},
		{"1.5GiB", 0, false},
		{"-1", 0, false},
		{"2TiB", 0, false},
		{"1099511627777", 0, false},
		{"99999999999999999999999", 0, false},
		{"1 MiB", 0, false},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "1", "64KiB", "256MiB", "1TiB", "1.5G", "x", "18446744073709551615", "9kb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err != nil {
			if n != 0 {
				t.Fatalf("parseSize(%q) = %d with error %v", s, n, err)
			}
			return
		}
		if n > maxSize {
			t.Fatalf("parseSize(%q) = %d, above the 1TiB bound", s, n)
		}
	})
}

func FuzzParseHTTPURL(f *testing.F) {
	for _, s := range []string{"http://198.18.0.100/", "http://198.18.0.100:8080/x?y=1", "https://a", "http://[::1]:80/", ":::", "http://:80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := parseHTTPURL(s)
		if err != nil {
			return
		}
		if _, _, err := net.SplitHostPort(u.Host); err != nil || u.Scheme != "http" {
			t.Fatalf("parseHTTPURL(%q) accepted host %q scheme %q", s, u.Host, u.Scheme)
		}
	})
}
