package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMeasure runs "measure" on stand-in commands: cat prints a real
// iperf3 output, sh prints load JSON or fails.
func TestMeasure(t *testing.T) {
	iperfOut, err := filepath.Abs(filepath.Join("testdata", "iperf3-2streams.json"))
	if err != nil {
		t.Fatal(err)
	}
	loadJSON := `{"target":"198.18.0.100:80","workers":2,"duration_s":1,"started":10,"ok":10,"ok_in_window":9,"conn_per_s":9,"latency_ms":{"p50":1}}`
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		check   func(t *testing.T, s Sample)
		wantErr string
	}{
		{
			name: "iperf3 with this process as the balancer",
			args: []string{"--mode", "l4raw", "--test", "iperf3-8", "--rep", "2", "--kind", "iperf3", "--pid", "SELF", "--", "cat", iperfOut},
			check: func(t *testing.T, s Sample) {
				if s.Bulk == nil || s.Bulk.Streams != 2 || s.Mode != "l4raw" || s.Test != "iperf3-8" || s.Rep != 2 || s.Attempt != 1 {
					t.Errorf("sample %+v", s)
				}
				if s.CPU.Balancer != cpuProcess || s.CPU.BalancerS == nil || *s.CPU.BalancerS < 0 || s.CPU.Process == "" {
					t.Errorf("cpu %+v", s.CPU)
				}
				if s.CPU.Machine.CPUs < 1 || s.WallS <= 0 || s.LoadAvg.Before < 0 || s.Start.IsZero() {
					t.Errorf("machine %+v wall %v load %+v", s.CPU.Machine, s.WallS, s.LoadAvg)
				}
				if _, ok := s.ClientTCP["TcpActiveOpens"]; !ok {
					t.Errorf("client counters %v", s.ClientTCP)
				}
			},
		},
		{
			name: "load in kernel mode",
			args: []string{"--mode", "kernel", "--test", "conn", "--kind", "load", "--machine-cpu", "--attempt", "2", "--", "sh", "-c", "echo '" + loadJSON + "'"},
			check: func(t *testing.T, s Sample) {
				if s.Conn == nil || s.Conn.OKInWindow != 9 || s.Attempt != 2 {
					t.Errorf("sample %+v", s)
				}
				if s.CPU.Balancer != cpuMachine || s.CPU.BalancerS == nil ||
					!near(*s.CPU.BalancerS, s.CPU.Machine.SystemS+s.CPU.Machine.SoftirqS) {
					t.Errorf("cpu %+v", s.CPU)
				}
			},
		},
		{
			name: "direct: no balancer; unreadable backend counters are left out",
			args: []string{"--mode", "direct", "--test", "conn", "--kind", "load", "--backend-ns", "l4b-no-such-namespace",
				"--", "sh", "-c", "echo '" + loadJSON + "'"},
			check: func(t *testing.T, s Sample) {
				if s.CPU.Balancer != cpuNone || s.CPU.BalancerS != nil {
					t.Errorf("cpu %+v", s.CPU)
				}
				if s.BackendTCP != nil {
					t.Errorf("backend counters %v from a namespace that does not exist", s.BackendTCP)
				}
			},
		},
		{
			name:    "a failing command gives a sample with its error",
			args:    []string{"--mode", "l4raw", "--test", "conn", "--kind", "load", "--", "sh", "-c", "echo half; exit 3"},
			code:    exitFail,
			wantErr: "exit status 3",
		},
		{
			name:    "iperf3's own message wins over its exit code",
			args:    []string{"--mode", "l4raw", "--test", "iperf3-1", "--kind", "iperf3", "--", "sh", "-c", `echo '{"error": "the server is busy running a test"}'; exit 1`},
			code:    exitFail,
			wantErr: "iperf3: the server is busy running a test",
		},
		{
			name:    "a hung command is killed",
			args:    []string{"--mode", "l4raw", "--test", "conn", "--kind", "load", "--timeout", "200ms", "--", "sleep", "30"},
			code:    exitFail,
			wantErr: "killed after 200ms",
		},
		{
			name:    "the balancer is gone",
			args:    []string{"--mode", "haproxy", "--test", "conn", "--kind", "load", "--pid", "2147483647", "--", "sh", "-c", "echo '" + loadJSON + "'"},
			code:    exitFail,
			wantErr: "balancer pid 2147483647",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			out, raw := filepath.Join(dir, "s.json"), filepath.Join(dir, "raw.txt")
			args := append([]string{"measure", "--out", out, "--raw", raw}, tc.args...)
			for i, a := range args {
				if a == "SELF" {
					args[i] = strconv.Itoa(os.Getpid())
				}
			}
			var stdout, stderr bytes.Buffer
			start := time.Now()
			code := run(env{ctx: t.Context(), stdout: &stdout, stderr: &stderr}, args)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %s", code, tc.code, stderr.String())
			}
			if time.Since(start) > 10*time.Second {
				t.Fatalf("took %v", time.Since(start))
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatalf("no sample written: %v", err)
			}
			var s Sample
			if err := json.Unmarshal(b, &s); err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" {
				if !strings.Contains(s.Error, tc.wantErr) || s.ok() {
					t.Fatalf("sample error %q, want %q", s.Error, tc.wantErr)
				}
				return
			}
			if s.Error != "" || !s.ok() {
				t.Fatalf("sample error %q", s.Error)
			}
			if !strings.Contains(stdout.String(), s.Mode+" "+s.Test+" rep") {
				t.Errorf("progress line %q", stdout.String())
			}
			if r, _ := os.ReadFile(raw); len(r) == 0 {
				t.Error("raw output not kept")
			}
			tc.check(t, s)
		})
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "usage: l4bench"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"serve", "--listen", "nope"}, `--listen "nope"`},
		{[]string{"serve", "--reply-bytes", "0"}, "--reply-bytes 0"},
		{[]string{"serve", "extra"}, `unexpected argument "extra"`},
		{[]string{"load"}, "--target"},
		{[]string{"load", "--target", "198.18.0.1:80", "--workers", "0"}, "--workers 0"},
		{[]string{"load", "--target", "198.18.0.1:80", "--duration", "0s"}, "--duration 0s"},
		{[]string{"load", "--target", "198.18.0.1:80", "--source-addrs", "198.18.0.1,x"}, `"x": want an IPv4 address`},
		{[]string{"load", "--target", "[2001:db8::1]:80"}, "want IPv4 IP:PORT"},
		{[]string{"load", "--target", "198.18.0.1:80", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"proxy", "--listen", "198.18.0.1:80"}, "--backend no address"},
		{[]string{"proxy", "--listen", "198.18.0.1:80", "--backend", "198.18.0.2"}, `"198.18.0.2": want IPv4 IP:PORT`},
		{[]string{"wait", "--target", "198.18.0.1:80", "--timeout", "-1s"}, "--timeout -1s"},
		{[]string{"measure", "--mode", "x", "--test", "y", "--kind", "z", "--out", "f", "--", "true"}, `--kind "z"`},
		{[]string{"measure", "--mode", "x", "--test", "y", "--kind", "load", "--out", "f"}, "no command"},
		{[]string{"measure", "--mode", "x", "--test", "y", "--kind", "load"}, "--out is required"},
		{[]string{"measure", "--mode", "x", "--test", "y", "--kind", "load", "--out", "f", "--pid", "3", "--machine-cpu", "--", "true"}, "exclude each other"},
		{[]string{"report"}, "--dir is required"},
	} {
		var stderr bytes.Buffer
		code := run(env{ctx: t.Context(), stdout: io.Discard, stderr: &stderr}, tc.args)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d", tc.args, code, exitUsage)
		}
		if msg := stderr.String(); !strings.Contains(msg, tc.want) || strings.Count(strings.TrimSpace(msg), "\n") > 0 && tc.args != nil {
			t.Errorf("%v: stderr %q, want one line with %q", tc.args, msg, tc.want)
		}
	}
	var stdout bytes.Buffer
	if code := run(env{ctx: t.Context(), stdout: &stdout, stderr: io.Discard}, []string{"load", "-h"}); code != exitOK ||
		!strings.Contains(stdout.String(), "-source-addrs") {
		t.Errorf("load -h: exit %d, %q", code, stdout.String())
	}
}
