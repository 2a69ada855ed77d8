//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The smoke run must stay well under two minutes (scripts/bench.sh
// --smoke: one repetition, 2 s tests, every mode); benchSmokeKill bounds it
// for real.
const (
	benchSmokeLimit = 2 * time.Minute
	benchSmokeKill  = 4 * time.Minute
)

// benchTools are what scripts/bench.sh runs besides our binaries, with the
// Debian package of each: missing in CI is a failure, not a skip.
func benchTools() [][2]string {
	return [][2]string{
		{"iperf3", "iperf3"}, {"haproxy", "haproxy"}, {"iptables", "iptables"}, {"ss", "iproute2"}, {"flock", "util-linux"},
	}
}

// The modes and tests of a full bench, in its order.
func benchModes() []string { return []string{"direct", "l4raw", "kernel", "haproxy", "goproxy"} }
func benchTests() []string { return []string{"iperf3-1", "iperf3-8", "conn"} }

// benchSample is the part of a results.json sample the smoke test checks.
type benchSample struct {
	Mode, Test, Error string
	Rep               int
	WallS             float64 `json:"wall_s"`
	Bulk              *struct {
		Streams     int
		Gbps        float64
		Bytes       uint64
		Seconds     float64
		SenderCC    string `json:"sender_cc"`
		ReceiverCC  string `json:"receiver_cc"`
		Retransmits *uint64
	}
	Conn *struct {
		Workers           int
		Started, OK, Slow uint64
		OKInWindow        uint64 `json:"ok_in_window"`
		Failed            uint64
		ConnPerSec        float64 `json:"conn_per_s"`
		Errors            map[string]uint64
		Latency           struct{ P50, P99, P999, Max float64 } `json:"latency_ms"`
	}
	CPU struct {
		Balancer  string
		BalancerS *float64 `json:"balancer_s"`
		Machine   struct {
			CPUs   int
			TotalS float64 `json:"total_s"`
		}
	}
}

type benchResults struct {
	Meta    map[string]string
	Modes   []string
	Tests   []string
	Samples []benchSample
	Summary []struct {
		Mode, Test string
		VsKernel   *float64 `json:"vs_kernel"`
		VsDirect   *float64 `json:"vs_direct"`
	}
}

// TestBenchSmoke runs the benchmark in short mode and checks that it works:
// every mode and test has a sane sample, the Markdown has its tables and
// the chart is XML. It checks no speed.
func TestBenchSmoke(t *testing.T) {
	requireRoot(t)
	for _, tool := range benchTools() {
		if _, err := exec.LookPath(tool[0]); err != nil {
			t.Fatalf("%s not found: the bench needs it (apt-get install %s)", tool[0], tool[1])
		}
	}
	root := benchRoot(t)
	// The bench takes its binaries from one directory: the harness's l4raw
	// and an l4bench built here.
	bin := t.TempDir()
	if err := os.Symlink(L4raw(t), filepath.Join(bin, "l4raw")); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code, err := execute(buildTimeout, "env", "CGO_ENABLED=0", "go", "build", "-C", root, "-trimpath",
		"-o", filepath.Join(bin, "l4bench"), "./cmd/l4bench"); err != nil || code != 0 {
		t.Fatalf("build ./cmd/l4bench: %v %s", err, stderr)
	}
	out := filepath.Join(t.TempDir(), "results")

	ctx, cancel := context.WithTimeout(context.Background(), benchSmokeKill)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "bench.sh"), "--smoke", "--out", out, "--bin", bin)
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay
	var output syncBuffer
	cmd.Stdout, cmd.Stderr = &output, &output
	start := time.Now()
	if err := startCmd(cmd); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	took := time.Since(start)
	t.Logf("scripts/bench.sh --smoke: %v, output:\n%s", took.Round(time.Second), output.String())
	if ctx.Err() != nil {
		t.Fatalf("killed after %v", benchSmokeKill)
	}
	if err != nil {
		t.Fatalf("scripts/bench.sh --smoke: %v", err)
	}
	if took > benchSmokeLimit {
		t.Errorf("the smoke run took %v, want well under %v", took.Round(time.Second), benchSmokeLimit)
	}
	if left := benchNamespaces(t); len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}

	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r benchResults
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	checkBenchResults(t, &r)

	md, err := os.ReadFile(filepath.Join(out, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Ratios", "## Bulk transfer", "## Short connections", "Smoke run", "(chart.svg)",
		"| mode | iperf3, 1 stream vs kernel | vs direct |", "slower than 1 s"} {
		if !bytes.Contains(md, []byte(want)) {
			t.Errorf("results.md lacks %q", want)
		}
	}
	for _, mode := range benchModes() {
		if !bytes.Contains(md, []byte("\n| "+mode+" | ")) {
			t.Errorf("results.md has no row for %s", mode)
		}
	}

	svg, err := os.ReadFile(filepath.Join(out, "chart.svg"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		XMLName xml.Name `xml:"svg"`
		Panels  []struct {
			Rects []struct{} `xml:"rect"`
		} `xml:"g"`
	}
	if err := xml.Unmarshal(svg, &doc); err != nil {
		t.Fatalf("chart.svg does not parse as XML: %v", err)
	}
	if len(doc.Panels) != 2 {
		t.Fatalf("chart.svg: %d panels, want 2 (ratio to kernel, to direct)", len(doc.Panels))
	}
	for i, p := range doc.Panels {
		if want := len(benchModes()) * len(benchTests()); len(p.Rects) != want {
			t.Errorf("chart.svg panel %d: %d bars, want %d", i, len(p.Rects), want)
		}
	}
}

func checkBenchResults(t *testing.T, r *benchResults) {
	t.Helper()
	if r.Meta["smoke"] != "1" || r.Meta["kernel"] == "" || r.Meta["command"] == "" {
		t.Errorf("meta %v", r.Meta)
	}
	if strings.Join(r.Modes, ",") != strings.Join(benchModes(), ",") || strings.Join(r.Tests, ",") != strings.Join(benchTests(), ",") {
		t.Fatalf("modes %v tests %v", r.Modes, r.Tests)
	}
	for _, mode := range benchModes() {
		for _, test := range benchTests() {
			var got []benchSample
			for _, s := range r.Samples {
				if s.Mode == mode && s.Test == test {
					got = append(got, s)
				}
			}
			name := mode + " " + test
			if len(got) != 1 {
				t.Errorf("%s: %d samples, want 1", name, len(got))
				continue
			}
			if p := checkBenchSample(&got[0], test); p != "" {
				t.Errorf("%s: %s", name, p)
			}
			found := false
			for _, s := range r.Summary {
				if s.Mode == mode && s.Test == test {
					found = true
					if s.VsKernel == nil || *s.VsKernel <= 0 || s.VsDirect == nil || *s.VsDirect <= 0 {
						t.Errorf("%s: ratios %v %v", name, s.VsKernel, s.VsDirect)
					}
				}
			}
			if !found {
				t.Errorf("%s: no summary", name)
			}
		}
	}
}

// checkBenchSample says what is not sane about a sample, or "".
func checkBenchSample(s *benchSample, test string) string {
	if s.Error != "" {
		return "failed: " + s.Error
	}
	if s.Rep != 1 || s.WallS <= 0 || s.CPU.Machine.CPUs < 1 || s.CPU.Machine.TotalS <= 0 {
		return fmt.Sprintf("rep %d wall %v machine %+v", s.Rep, s.WallS, s.CPU.Machine)
	}
	bal := s.CPU.BalancerS
	switch s.Mode {
	case "direct":
		if s.CPU.Balancer != "none" || bal != nil {
			return fmt.Sprintf("direct has a balancer CPU: %s %v", s.CPU.Balancer, bal)
		}
	case "kernel":
		if s.CPU.Balancer != "machine sys+softirq" || bal == nil || *bal < 0 {
			return fmt.Sprintf("kernel CPU %s %v, want the machine's sys+softirq", s.CPU.Balancer, bal)
		}
	default:
		if s.CPU.Balancer != "process" || bal == nil || *bal < 0 {
			return fmt.Sprintf("balancer CPU %s %v, want the process's", s.CPU.Balancer, bal)
		}
	}
	if test == "conn" {
		c := s.Conn
		if c == nil {
			return "no short-connection result"
		}
		l := c.Latency
		switch {
		case c.Workers < 1 || c.OK == 0 || c.OK+c.Failed != c.Started || c.OKInWindow > c.OK || c.Slow > c.OK:
			return fmt.Sprintf("counts: %+v", *c)
		case c.ConnPerSec <= 0:
			return fmt.Sprintf("conn/s %v", c.ConnPerSec)
		case !(l.P50 > 0 && l.P50 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max):
			return fmt.Sprintf("latency %+v", l)
		}
		var errs uint64
		for _, n := range c.Errors {
			errs += n
		}
		if errs != c.Failed {
			return fmt.Sprintf("errors %v add up to %d, failed %d", c.Errors, errs, c.Failed)
		}
		return ""
	}
	b := s.Bulk
	if b == nil {
		return "no iperf3 result"
	}
	if want := map[string]int{"iperf3-1": 1, "iperf3-8": 8}[test]; b.Streams != want {
		return fmt.Sprintf("%d streams, want %d", b.Streams, want)
	}
	if b.Gbps <= 0 || b.Bytes == 0 || b.Seconds <= 0 || b.Retransmits == nil {
		return fmt.Sprintf("bulk %+v", *b)
	}
	if b.SenderCC != "cubic" || b.ReceiverCC != "cubic" {
		return fmt.Sprintf("congestion control %s/%s, want cubic", b.SenderCC, b.ReceiverCC)
	}
	return ""
}

// benchRoot is the directory of this module's go.mod.
func benchRoot(t *testing.T) string {
	t.Helper()
	gomod, _, code, err := execute(CommandTimeout, "go", "env", "GOMOD")
	gomod = strings.TrimSpace(gomod)
	if err != nil || code != 0 || gomod == "" || gomod == os.DevNull {
		t.Fatalf("find the module root (go env GOMOD = %q): %v", gomod, err)
	}
	return filepath.Dir(gomod)
}

// benchNamespaces lists the bench's namespaces (l4b-*) that exist.
func benchNamespaces(t *testing.T) []string {
	t.Helper()
	stdout, _, _, err := execute(CommandTimeout, "ip", "netns", "list")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(stdout, "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "l4b-") {
			out = append(out, f[0])
		}
	}
	return out
}
