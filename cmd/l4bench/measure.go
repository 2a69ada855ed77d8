package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Kinds of test command "measure" runs, by the output it parses.
const (
	kindIperf3 = "iperf3" // iperf3 --json
	kindLoad   = "load"   // l4bench load --json
)

// measureConfig is one "measure" run.
type measureConfig struct {
	mode, test, kind string
	rep, attempt     int
	pid              int      // the balancer process; 0: none
	backendNS        []string // namespaces whose TCP counters are summed into BackendTCP
	machineCPU       bool     // no process: the machine's system+softirq stands in
	timeout          time.Duration
	command          []string
	stderr           io.Writer // the command's stderr
	raw              io.Writer // a copy of the command's stdout; may be nil
}

// probe is what is read before and after a test.
type probe struct {
	at      time.Time
	load    float64
	stat    cpuTimes
	statErr error
	pidCPU  time.Duration
	pidErr  error
	snmp    map[string]uint64
	backend map[string]uint64 // summed over the backend namespaces
}

// takeProbe reads the counters around a test. The slow part, the backends'
// counters (one "ip netns exec" each), is read outside the timed window:
// first in the probe before the test, last in the one after it.
func takeProbe(ctx context.Context, cfg *measureConfig, beforeTest bool) probe {
	var p probe
	if beforeTest {
		p.backend = readBackends(ctx, cfg.backendNS)
	}
	p.at, p.load = time.Now(), readLoadAvg()
	p.stat, p.statErr = readProcStat()
	if cfg.pid > 0 {
		p.pidCPU, p.pidErr = processCPU(cfg.pid)
	}
	// Best effort: the counters explain the numbers, they do not decide.
	p.snmp, _ = readSNMP()
	if !beforeTest {
		p.backend = readBackends(ctx, cfg.backendNS)
	}
	return p
}

// readBackends sums the TCP counters of the namespaces; nil if there are
// none or one cannot be read.
func readBackends(ctx context.Context, namespaces []string) map[string]uint64 {
	if len(namespaces) == 0 {
		return nil
	}
	sum := map[string]uint64{}
	for _, ns := range namespaces {
		m, err := readSNMPIn(ctx, ns)
		if err != nil {
			return nil
		}
		for k, v := range m {
			sum[k] += v
		}
	}
	return sum
}

// readSNMPIn reads the TCP counters of another network namespace with
// "ip netns exec" (a Go process cannot switch namespaces for one read
// without pinning a thread).
func readSNMPIn(ctx context.Context, ns string) (map[string]uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "cat", "/proc/net/snmp", "/proc/net/netstat").Output()
	if err != nil {
		return nil, fmt.Errorf("read counters of namespace %s: %w", ns, err)
	}
	return parseSNMP(string(out))
}

// counterDelta returns after - before for the given names.
func counterDelta(before, after map[string]uint64, names []string) map[string]uint64 {
	if before == nil || after == nil {
		return nil
	}
	d := map[string]uint64{}
	for _, k := range names {
		if a, b := before[k], after[k]; b >= a {
			d[k] = b - a
		}
	}
	return d
}

// measure runs the test command between two probes and returns the sample.
// A failed command still gives a sample, with Error set.
func measure(ctx context.Context, cfg measureConfig) Sample {
	s := Sample{Mode: cfg.mode, Test: cfg.test, Rep: cfg.rep, Attempt: cfg.attempt, Command: cfg.command}
	s.CPU.Balancer = cpuNone
	switch {
	case cfg.pid > 0:
		s.CPU.Balancer = cpuProcess
		s.CPU.Process = processName(cfg.pid)
	case cfg.machineCPU:
		s.CPU.Balancer = cpuMachine
	}

	before := takeProbe(ctx, &cfg, true)
	s.Start = before.at.UTC()
	stdout, runErr := runCommand(ctx, cfg)
	after := takeProbe(ctx, &cfg, false)

	s.WallS = after.at.Sub(before.at).Seconds()
	s.LoadAvg = LoadAvg{Before: before.load, After: after.load}
	var errs []error
	if before.statErr == nil && after.statErr == nil {
		s.CPU.Machine = machineDelta(before.stat, after.stat)
	} else {
		errs = append(errs, fmt.Errorf("read /proc/stat: %w", errors.Join(before.statErr, after.statErr)))
	}
	switch s.CPU.Balancer {
	case cpuProcess:
		if before.pidErr != nil || after.pidErr != nil {
			// The balancer died during the test: its numbers mean nothing.
			errs = append(errs, fmt.Errorf("balancer pid %d: %w", cfg.pid, errors.Join(before.pidErr, after.pidErr)))
		} else {
			s.CPU.BalancerS = ptr((after.pidCPU - before.pidCPU).Seconds())
		}
	case cpuMachine:
		s.CPU.BalancerS = ptr(s.CPU.Machine.SystemS + s.CPU.Machine.SoftirqS)
	}
	s.ClientTCP = counterDelta(before.snmp, after.snmp, tcpCounterNames())
	s.BackendTCP = counterDelta(before.backend, after.backend, backendCounterNames())

	var parseErr error
	switch cfg.kind {
	case kindIperf3:
		var b Bulk
		if b, parseErr = parseIperf(stdout); parseErr == nil {
			s.Bulk = &b
		}
	case kindLoad:
		var c ConnStats
		if err := json.Unmarshal(stdout, &c); err != nil {
			parseErr = fmt.Errorf("parse load json: %w", err)
		} else if c.Workers == 0 {
			parseErr = errors.New("parse load json: no workers")
		} else {
			s.Conn = &c
		}
	}
	switch {
	case errors.Is(parseErr, errIperf):
		errs = append(errs, parseErr) // iperf3's own message says more than its exit code
	case runErr != nil:
		errs = append(errs, runErr)
	case parseErr != nil:
		errs = append(errs, parseErr)
	}
	if err := errors.Join(errs...); err != nil {
		s.Error = strings.ReplaceAll(err.Error(), "\n", "; ")
	}
	return s
}

// runCommand runs the test command, bounded by cfg.timeout, and returns its
// stdout.
func runCommand(ctx context.Context, cfg measureConfig) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cfg.command[0], cfg.command[1:]...)
	var out bytes.Buffer
	cmd.Stdout = &out
	if cfg.raw != nil {
		cmd.Stdout = io.MultiWriter(&out, cfg.raw)
	}
	cmd.Stderr = cfg.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return out.Bytes(), fmt.Errorf("%s: killed after %v", cfg.command[0], cfg.timeout)
	}
	if err != nil {
		return out.Bytes(), fmt.Errorf("%s: %w", cfg.command[0], err)
	}
	return out.Bytes(), nil
}

// writeFileAtomic writes b to a temporary file next to path and renames it,
// so that a reader never sees half a sample.
func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func runMeasure(e env, args []string) int {
	fs := newFlagSet("measure", "--mode M --test T --rep N --kind iperf3|load --out FILE [--pid P] -- COMMAND [ARGS...]")
	mode := fs.String("mode", "", "`MODE` of the run: direct, l4raw, kernel, haproxy, goproxy")
	test := fs.String("test", "", "`TEST` name: iperf3-1, iperf3-8, conn")
	rep := fs.Int("rep", 1, "repetition `N`")
	attempt := fs.Int("attempt", 1, "attempt `N` of this test (a retry after a tool failure)")
	kind := fs.String("kind", "", "`KIND` of output to parse: iperf3 (--json) or load (l4bench load --json)")
	out := fs.String("out", "", "`FILE` to write the sample to (JSON)")
	raw := fs.String("raw", "", "`FILE` to copy the command's stdout to")
	pid := fs.Int("pid", 0, "`PID` of the balancer process, for its CPU time")
	machine := fs.Bool("machine-cpu", false, "no balancer process: count the machine's system+softirq time (kernel mode)")
	timeout := fs.Duration("timeout", 5*time.Minute, "kill the command after `D`")
	backendNS := fs.String("backend-ns", "", "comma-separated network `NAMESPACES` of the backends, for their TCP counters")
	if code, done := parseFlags(e, fs, args, true); done {
		return code
	}
	command := fs.Args()
	switch {
	case *mode == "" || *test == "":
		return usageError(e, fs, "--mode and --test are required")
	case *kind != kindIperf3 && *kind != kindLoad:
		return usageError(e, fs, "--kind %q: want iperf3 or load", *kind)
	case *out == "":
		return usageError(e, fs, "--out is required")
	case len(command) == 0:
		return usageError(e, fs, "no command after the flags")
	case *pid < 0:
		return usageError(e, fs, "--pid %d: must not be negative", *pid)
	case *pid > 0 && *machine:
		return usageError(e, fs, "--pid and --machine-cpu exclude each other")
	case *timeout <= 0:
		return usageError(e, fs, "--timeout %v: must be positive", *timeout)
	case *rep < 1 || *attempt < 1:
		return usageError(e, fs, "--rep %d --attempt %d: want 1 or more", *rep, *attempt)
	}
	cfg := measureConfig{
		mode: *mode, test: *test, kind: *kind, rep: *rep, attempt: *attempt, pid: *pid, machineCPU: *machine,
		timeout: *timeout, command: slices.Clone(command), stderr: e.stderr,
	}
	for _, ns := range strings.Split(*backendNS, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			cfg.backendNS = append(cfg.backendNS, ns)
		}
	}
	if *raw != "" {
		f, err := os.Create(*raw)
		if err != nil {
			return failf(e, fs, "create %s: %v", *raw, err)
		}
		defer f.Close()
		cfg.raw = f
	}
	s := measure(e.ctx, cfg)
	b, _ := json.MarshalIndent(s, "", "  ")
	if err := writeFileAtomic(*out, append(b, '\n')); err != nil {
		return failf(e, fs, "write %s: %v", *out, err)
	}
	if s.Error != "" {
		return failf(e, fs, "%s %s rep %d: %s", *mode, *test, *rep, s.Error)
	}
	fmt.Fprintln(e.stdout, sampleLine(&s))
	return exitOK
}

// sampleLine is a one-line account of a sample, for the bench's progress.
func sampleLine(s *Sample) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s rep %d:", s.Mode, s.Test, s.Rep)
	switch {
	case s.Bulk != nil:
		fmt.Fprintf(&b, " %.2f Gb/s, %d retransmits, cc %s/%s", s.Bulk.Gbps, s.Bulk.Retransmits, s.Bulk.SenderCC, s.Bulk.ReceiverCC)
	case s.Conn != nil:
		c := s.Conn
		fmt.Fprintf(&b, " %.0f conn/s, p50 %.3f ms, p99 %.3f ms, max %.0f ms, %d slower than 1 s, %d failed",
			c.ConnPerSec, c.Latency.P50, c.Latency.P99, c.Latency.Max, c.Slow, c.Failed)
	}
	if s.CPU.BalancerS != nil {
		fmt.Fprintf(&b, "; balancer CPU %.2f s (%s)", *s.CPU.BalancerS, s.CPU.Balancer)
	}
	fmt.Fprintf(&b, "; load %.2f", s.LoadAvg.Before)
	return b.String()
}
