package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Files of a results directory.
const (
	fileResults = "results.json"
	fileMD      = "results.md"
	fileSVG     = "chart.svg"
	fileMeta    = "meta.txt"
	dirSamples  = "samples"
)

// fmtNum prints a number with about three significant digits.
func fmtNum(v float64) string {
	switch a := max(v, -v); {
	case a == 0:
		return "0"
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}

// fmtRange prints "median (min–max)", or just the value for one sample.
func fmtRange(r Range, n int) string {
	if n <= 1 || r.Min == r.Max {
		return fmtNum(r.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", fmtNum(r.Median), fmtNum(r.Min), fmtNum(r.Max))
}

// fmtCountRange is fmtRange for counts: no decimals unless a median falls
// between two.
func fmtCountRange(r Range, n int) string {
	c := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	if n <= 1 || r.Min == r.Max {
		return c(r.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", c(r.Median), c(r.Min), c(r.Max))
}

func fmtRatio(p *float64) string {
	if p == nil {
		return "—"
	}
	return strconv.FormatFloat(*p, 'f', 2, 64)
}

// fmtCPU prints the balancer's CPU share, marking the machine-wide stand-in.
func fmtCPU(s *Summary) string {
	if s.BalancerPct == nil {
		return "—"
	}
	mark := ""
	if s.CPUSource == cpuMachine {
		mark = " †"
	}
	return fmt.Sprintf("%.0f %%%s", *s.BalancerPct, mark)
}

func fmtPerUnit(s *Summary) string {
	if s.CPUPerUnit == nil {
		return "—"
	}
	mark := ""
	if s.CPUSource == cpuMachine {
		mark = " †"
	}
	return fmtNum(*s.CPUPerUnit) + " " + s.CPUUnit + mark
}

// fmtErrors prints "N (kind n, kind n)" or "0".
func fmtErrors(total uint64, kinds map[string]uint64) string {
	if total == 0 {
		return "0"
	}
	keys := make([]string, 0, len(kinds))
	for k := range kinds {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, kinds[k])
	}
	return fmt.Sprintf("%d (%s)", total, strings.Join(parts, ", "))
}

func fmtShare(n, of uint64) string {
	if of == 0 {
		return strconv.FormatUint(n, 10)
	}
	pct := 100 * float64(n) / float64(of)
	if pct > 0 && pct < 0.1 {
		return fmt.Sprintf("%d (%.3f %%)", n, pct)
	}
	return fmt.Sprintf("%d (%.2f %%)", n, pct)
}

// renderMarkdown writes results.md: the ratios, one table per kind of
// test, and how the numbers were taken.
func renderMarkdown(r *Results) string {
	var b strings.Builder
	m := r.Meta
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# l4raw benchmark results\n\n")
	if m["smoke"] == "1" {
		p("**Smoke run** (short tests, one repetition): it shows that the bench works, not how fast anything is.\n\n")
	}
	reps := 0
	for _, s := range r.Samples {
		reps = max(reps, s.Rep)
	}
	p("%d repetition(s); in each, every mode ran on fresh network namespaces, modes interleaved. ", reps)
	p("Values are medians over the repetitions, (min–max) when they differ.\n\n")
	if len(m) > 0 {
		p("| | |\n|---|---|\n")
		for _, k := range []string{"date", "machine", "cpus", "memory", "kernel", "l4raw", "checkout", "haproxy", "iperf3", "go",
			"congestion_control", "iperf_seconds", "iperf_omit", "conn_seconds", "conn_workers", "client_addrs", "l4raw_args",
			"loadavg_start", "loadavg_end"} {
			if v, ok := m[k]; ok {
				p("| %s | %s |\n", strings.ReplaceAll(k, "_", " "), mdCell(v))
			}
		}
		p("\n")
	}

	p("## Ratios\n\n")
	p("Each mode's median divided by the median of `kernel` (iptables DNAT + MASQUERADE) and of `direct` ")
	p("(client to one backend, no balancer: the network's limit). Higher is better.\n\n")
	p("| mode |")
	for _, t := range r.Tests {
		p(" %s vs kernel | vs direct |", testTitle(t))
	}
	p("\n|---|")
	for range r.Tests {
		p("---:|---:|")
	}
	p("\n")
	for _, mode := range r.Modes {
		p("| %s |", mode)
		for _, t := range r.Tests {
			s := r.find(mode, t)
			if s == nil {
				p(" — | — |")
				continue
			}
			p(" %s | %s |", fmtRatio(s.VsKernel), fmtRatio(s.VsDirect))
		}
		p("\n")
	}
	p("\n![ratios to kernel and to direct](%s)\n\n", fileSVG)

	var bulk, conn []string
	for _, t := range r.Tests {
		if t == testConn {
			conn = append(conn, t)
		} else {
			bulk = append(bulk, t)
		}
	}
	if len(bulk) > 0 {
		p("## Bulk transfer: iperf3, client to one backend\n\n")
		p("iperf3 sends from the client through the service to one backend (a service with a single backend in every ")
		p("mode: iperf3's data connections must reach the server of its control connection). Gb/s is what the receiver got.\n\n")
		p("| test | mode | Gb/s | vs kernel | vs direct | retransmits | balancer CPU | CPU per GB | machine busy |\n")
		p("|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, t := range bulk {
			for _, mode := range r.Modes {
				s := r.find(mode, t)
				if s == nil {
					continue
				}
				if s.OK == 0 {
					p("| %s | %s | failed (%d) | — | — | — | — | — | — |\n", testTitle(t), mode, s.Failed)
					continue
				}
				p("| %s | %s | %s | %s | %s | %s | %s | %s | %.0f %% |\n", testTitle(t), mode, fmtRange(s.Value, s.OK),
					fmtRatio(s.VsKernel), fmtRatio(s.VsDirect), fmtCountRange(s.Retransmits, s.OK), fmtCPU(s), fmtPerUnit(s), s.MachinePct)
			}
		}
		p("\n")
	}
	if len(conn) > 0 {
		p("## Short connections: three backends, round robin\n\n")
		p("Workers loop: connect, send a small request, read the answer until the server closes (it closes first), close. ")
		p("Latency runs from the start of connect to the server's EOF. A connection slower than 1 s almost always lost ")
		p("a SYN (1 s is the initial retransmission timeout): the TIME_WAIT/PAWS stall of a NAT that reuses ports. ")
		p("SYN retransmits are the client's (TcpExtTCPSynRetrans); PAWS rejects are SYNs the backends' TIME_WAIT sockets ")
		p("refused for an older timestamp (TcpExtPAWSTimewait). Counts are sums over the repetitions.\n\n")
		p("| mode | conn/s | vs kernel | vs direct | p50 ms | p99 ms | p99.9 ms | max ms | slower than 1 s | failed | SYN retransmits | PAWS rejects | balancer CPU | CPU per conn | machine busy |\n")
		p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|\n")
		for _, mode := range r.Modes {
			s := r.find(mode, testConn)
			if s == nil {
				continue
			}
			if s.OK == 0 {
				p("| %s | failed (%d) | — | — | — | — | — | — | — | — | — | — | — | — | — |\n", mode, s.Failed)
				continue
			}
			p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %d | %s | %s | %.0f %% |\n", mode, fmtRange(s.Value, s.OK),
				fmtRatio(s.VsKernel), fmtRatio(s.VsDirect), fmtNum(s.Latency.P50), fmtNum(s.Latency.P99),
				fmtNum(s.Latency.P999), fmtNum(s.Latency.Max), fmtShare(s.Slow, s.Started),
				fmtErrors(s.ConnsFailed, s.Errors), s.SynRetrans, s.PAWSReject, fmtCPU(s), fmtPerUnit(s), s.MachinePct)
		}
		p("\n")
	}

	p("## How to read the CPU columns\n\n")
	p("- **balancer CPU** is the balancer process's user+system time over the test (all its threads), as a share of one CPU: ")
	p("l4raw, haproxy, `l4bench proxy` (goproxy). `direct` has no balancer.\n")
	p("- † **kernel** has no balancer process: the NAT runs in softirq context wherever the packet is. Its column is the ")
	p("whole machine's system+softirq time over the test (from /proc/stat), which also holds the client's and the ")
	p("backends' kernel work, so it overstates the balancer's share.\n")
	p("- **machine busy** is the share of all CPUs not idle during the test. Client, balancer and backends share the ")
	p("same CPUs (nothing is pinned), so every mode's numbers include the others' work.\n\n")

	var loads []float64
	var failed []string
	for _, s := range r.Samples {
		if s.LoadAvg.Before >= 0 {
			loads = append(loads, s.LoadAvg.Before)
		}
		if !s.ok() {
			failed = append(failed, fmt.Sprintf("- %s %s rep %d attempt %d: %s", s.Mode, s.Test, s.Rep, s.Attempt, mdCell(s.Error)))
		}
	}
	if len(loads) > 0 {
		lr := rangeOf(loads)
		p("1-minute load average at the start of the tests: median %.2f (min %.2f, max %.2f).\n\n", lr.Median, lr.Min, lr.Max)
	}
	if len(failed) > 0 {
		p("## Failed samples\n\n%s\n\n", strings.Join(failed, "\n"))
	}
	if c := m["command"]; c != "" {
		p("## Commands\n\n```\n%s\n```\n", c)
	}
	return b.String()
}

// mdCell keeps a value inside one table cell.
func mdCell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

// loadResults reads a results.json and recomputes its summaries (they are
// derived data: a newer report keeps older results readable).
func loadResults(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if r.Meta == nil {
		r.Meta = map[string]string{}
	}
	r.Summary = summarize(&r)
	return &r, nil
}

// writeReport writes results.md and chart.svg (and results.json if asked)
// into dir.
func writeReport(dir string, r *Results, withJSON bool) error {
	if withJSON {
		b, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(dir, fileResults), append(b, '\n')); err != nil {
			return err
		}
	}
	if err := writeFileAtomic(filepath.Join(dir, fileMD), []byte(renderMarkdown(r))); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, fileSVG), []byte(renderSVG(r)))
}

func runReport(e env, args []string) int {
	fs := newFlagSet("report", "--dir DIR [--in FILE]")
	dir := fs.String("dir", "", "results `DIR`: reads samples/*.json and meta.txt, writes results.json, results.md, chart.svg")
	in := fs.String("in", "", "render from this results.json `FILE` instead of the samples (writes only results.md and chart.svg)")
	if code, done := parseFlags(e, fs, args, false); done {
		return code
	}
	if *dir == "" {
		return usageError(e, fs, "--dir is required")
	}
	var r *Results
	if *in != "" {
		var err error
		if r, err = loadResults(*in); err != nil {
			return failf(e, fs, "%v", err)
		}
	} else {
		samples, err := readSamples(filepath.Join(*dir, dirSamples))
		if err != nil {
			return failf(e, fs, "%v", err)
		}
		if len(samples) == 0 {
			return failf(e, fs, "no samples in %s", filepath.Join(*dir, dirSamples))
		}
		meta := map[string]string{}
		if b, err := os.ReadFile(filepath.Join(*dir, fileMeta)); err == nil {
			meta = parseMeta(string(b))
		} else if !os.IsNotExist(err) {
			return failf(e, fs, "%v", err)
		}
		r = buildResults(meta, samples, time.Now())
	}
	if err := writeReport(*dir, r, *in == ""); err != nil {
		return failf(e, fs, "write report to %s: %v", *dir, err)
	}
	for _, f := range []string{fileResults, fileMD, fileSVG} {
		if *in != "" && f == fileResults {
			continue
		}
		fmt.Fprintln(e.stdout, filepath.Join(*dir, f))
	}
	return exitOK
}
