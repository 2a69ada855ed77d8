package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadInput: every wrong flag or config value gives exit code 2 and one
// line that names the value, before anything touches the network.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("services:\n  - vip: 198.18.0.100\n    port: 80\n    bakends: [198.18.0.21]\n"), 0o600)
	badAddr := filepath.Join(dir, "addr.yaml")
	os.WriteFile(badAddr, []byte("services:\n  - vip: 198.18.0.100\n    port: 80\n    backends: [198.18.0.300:8080]\n"), 0o600)
	vip, be := []string{"--vip", "198.18.0.100:80"}, []string{"--backend", "198.18.0.21:8080"}
	cases := []struct {
		name string
		args []string
		want string // must appear in the one line
	}{
		{"no service", nil, "--vip"},
		{"unknown flag", []string{"--bogus"}, "-bogus"},
		{"vip without port", []string{"--vip", "198.18.0.100", "--backend", "198.18.0.21"}, `"198.18.0.100"`},
		{"bad backend", append(vip, "--backend", "198.18.0.300:8080"), `"198.18.0.300:8080"`},
		{"bad backend port", append(vip, "--backend", "198.18.0.21:99999"), `"198.18.0.21:99999"`},
		{"no backend", vip, "--backend"},
		{"bad mode", append(append(vip, be...), "--mode", "nat"), `"nat"`},
		{"bad max-conns", append(append(vip, be...), "--max-conns", "lots"), `"lots"`},
		{"zero max-conns", append(append(vip, be...), "--max-conns", "0"), `"0"`},
		{"bad nat ports", append(append(vip, be...), "--nat-ports", "9000-8000"), `"9000-8000"`},
		{"bad timeout", append(append(vip, be...), "--timeout-fin", "soon"), `"soon"`},
		{"bad log level", append(append(vip, be...), "--log-level", "loud"), `"loud"`},
		{"pprof not loopback", append(append(vip, be...), "--pprof", "0.0.0.0:6060"), `"0.0.0.0:6060"`},
		{"bad pcap match", append(append(vip, be...), "--pcap", "/tmp/x", "--pcap-match", "nope"), `"nope"`},
		{"stray argument", append(append(vip, be...), "extra"), `"extra"`},
		{"missing config", []string{"--config", filepath.Join(dir, "none.yaml")}, "none.yaml"},
		{"config and flags", append([]string{"--config", bad}, vip...), "--vip"},
		{"config and api flag", []string{"--config", bad, "--api", "off"}, "--api"},
		{"config unknown field", []string{"--config", bad}, `bad.yaml:4`},
		{"config bad address", []string{"--config", badAddr}, `"198.18.0.300:8080"`},
		{"check bad address", []string{"check", "--config", badAddr}, `"198.18.0.300:8080"`},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := run(c.args, &out, &errb)
		msg := errb.String()
		if code != exitUsage {
			t.Errorf("%s: exit code %d, want 2 (stderr %q)", c.name, code, msg)
			continue
		}
		if strings.Count(msg, "\n") != 1 || !strings.HasSuffix(msg, "\n") {
			t.Errorf("%s: want exactly one line, got %q", c.name, msg)
		}
		if !strings.Contains(msg, c.want) {
			t.Errorf("%s: %q does not name %s", c.name, msg, c.want)
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "--vip") && !strings.Contains(out.String(), "-vip") {
		t.Fatalf("help: %d %q", code, out.String())
	}
	for _, f := range []string{"vip", "backend", "mode", "iface", "snat-ip", "nat-ports", "config", "max-conns", "no-guard", "log-level", "timeout-established", "health-interval"} {
		if !strings.Contains(out.String(), "-"+f) {
			t.Errorf("--help does not list --%s", f)
		}
	}
	out.Reset()
	if code := run([]string{"--version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "l4raw ") {
		t.Fatalf("version: %d %q", code, out.String())
	}
	out.Reset()
	good := filepath.Join(t.TempDir(), "ok.yaml")
	os.WriteFile(good, []byte("services:\n  - vip: 198.18.0.100\n    port: 80\n    backends: [198.18.0.21:8080]\n"), 0o600)
	if code := run([]string{"check", "--config", good}, &out, &errb); code != 0 || !strings.Contains(out.String(), "ok") {
		t.Fatalf("check: %d %q %q", code, out.String(), errb.String())
	}
}
