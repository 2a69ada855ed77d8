package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Modes and tests in the order of the issue; a run may do a subset.
const (
	modeDirect  = "direct"
	modeL4raw   = "l4raw"
	modeKernel  = "kernel"
	modeHAProxy = "haproxy"
	modeGoproxy = "goproxy"

	testIperf1 = "iperf3-1"
	testIperf8 = "iperf3-8"
	testConn   = "conn"
)

func knownModes() []string {
	return []string{modeDirect, modeL4raw, modeKernel, modeHAProxy, modeGoproxy}
}

func knownTests() []string { return []string{testIperf1, testIperf8, testConn} }

// testTitle is how a test is named in tables and the chart.
func testTitle(test string) string {
	switch test {
	case testIperf1:
		return "iperf3, 1 stream"
	case testIperf8:
		return "iperf3, 8 streams"
	case testConn:
		return "short connections"
	}
	return test
}

// Balancer CPU sources (CPUUse.Balancer).
const (
	cpuProcess = "process"             // utime+stime of the balancer's process
	cpuMachine = "machine sys+softirq" // kernel mode: no process; the whole machine's
	cpuNone    = "none"                // direct: there is no balancer
)

// CPUUse is the CPU a test cost.
type CPUUse struct {
	// Balancer says where BalancerS comes from: cpuProcess, cpuMachine or
	// cpuNone. In kernel mode the NAT runs in softirq context on whatever
	// CPU the packet is on, so the machine's system+softirq time over the
	// test stands in for it; it also holds the client's and the backends'
	// kernel work, so it overstates the balancer's share.
	Balancer  string     `json:"balancer"`
	Process   string     `json:"process,omitempty"` // command name of the balancer process
	BalancerS *float64   `json:"balancer_s"`        // nil when there is no balancer
	Machine   MachineCPU `json:"machine"`
}

// LoadAvg is the 1-minute load average before and after a test: how busy
// the machine was (the bench itself included).
type LoadAvg struct {
	Before float64 `json:"before"`
	After  float64 `json:"after"`
}

// Sample is one test of one mode in one repetition.
type Sample struct {
	Mode    string    `json:"mode"`
	Test    string    `json:"test"`
	Rep     int       `json:"rep"`
	Attempt int       `json:"attempt"`
	Start   time.Time `json:"start"`
	WallS   float64   `json:"wall_s"`
	Command []string  `json:"command"`
	Error   string    `json:"error,omitempty"`

	Bulk *Bulk      `json:"bulk,omitempty"`
	Conn *ConnStats `json:"conn,omitempty"`

	CPU     CPUUse  `json:"cpu"`
	LoadAvg LoadAvg `json:"loadavg"`
	// ClientTCP is the change of the client namespace's TCP counters over
	// the test (nstat names).
	ClientTCP map[string]uint64 `json:"client_tcp,omitempty"`
	// BackendTCP is the change of the backends' TCP counters, summed.
	BackendTCP map[string]uint64 `json:"backend_tcp,omitempty"`
}

// ok tells whether the sample holds a result.
func (s *Sample) ok() bool { return s.Error == "" && (s.Bulk != nil || s.Conn != nil) }

// value is the sample's headline number: Gb/s or connections per second.
func (s *Sample) value() float64 {
	switch {
	case s.Bulk != nil:
		return s.Bulk.Gbps
	case s.Conn != nil:
		return s.Conn.ConnPerSec
	}
	return 0
}

// Range is the median and spread of one quantity over repetitions.
type Range struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func rangeOf(v []float64) Range {
	if len(v) == 0 {
		return Range{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return Range{Median: median(s), Min: s[0], Max: s[len(s)-1]}
}

// median of sorted values: the middle one, or the mean of the two middle ones.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// Summary condenses the samples of one mode and test.
type Summary struct {
	Mode   string `json:"mode"`
	Test   string `json:"test"`
	Unit   string `json:"unit"` // of Value: "Gb/s" or "conn/s"
	OK     int    `json:"ok_samples"`
	Failed int    `json:"failed_samples"`
	Value  Range  `json:"value"`
	// Ratios of the medians; nil when the reference is missing.
	VsKernel *float64 `json:"vs_kernel"`
	VsDirect *float64 `json:"vs_direct"`

	Retransmits Range `json:"retransmits,omitzero"` // bulk

	// Short connections: latency percentiles are medians over repetitions,
	// except Max, the largest seen; counts are sums over repetitions.
	Latency     LatencyMS         `json:"latency_ms,omitzero"`
	Started     uint64            `json:"started,omitempty"`
	Slow        uint64            `json:"slow,omitempty"`
	ConnsFailed uint64            `json:"conns_failed,omitempty"`
	Errors      map[string]uint64 `json:"errors,omitempty"`
	SynRetrans  uint64            `json:"syn_retrans,omitempty"`
	PAWSReject  uint64            `json:"paws_rejects,omitempty"` // backends' TcpExtPAWSTimewait

	// CPU: the balancer's share of one CPU over the test (median, %) and
	// its cost per unit of work: ms per GB received, or µs per connection.
	CPUSource   string   `json:"cpu_source"`
	BalancerPct *float64 `json:"balancer_cpu_pct"`
	CPUPerUnit  *float64 `json:"cpu_per_unit"`
	CPUUnit     string   `json:"cpu_unit,omitempty"`
	MachinePct  float64  `json:"machine_busy_pct"` // all CPUs busy, % of the machine
}

// Results is results.json.
type Results struct {
	Schema    int               `json:"schema"`
	Generated time.Time         `json:"generated"`
	Meta      map[string]string `json:"meta"`
	Modes     []string          `json:"modes"`
	Tests     []string          `json:"tests"`
	Samples   []Sample          `json:"samples"`
	Summary   []Summary         `json:"summary"`
}

const resultsSchema = 1

func ptr(v float64) *float64 { return &v }

// summarize computes the summaries of every mode and test, in order.
func summarize(r *Results) []Summary {
	var out []Summary
	for _, test := range r.Tests {
		for _, mode := range r.Modes {
			out = append(out, summarizeOne(r.Samples, mode, test))
		}
		// Ratios once every mode of this test is known.
		ref := func(mode string) float64 {
			for _, s := range out {
				if s.Test == test && s.Mode == mode && s.OK > 0 {
					return s.Value.Median
				}
			}
			return 0
		}
		k, d := ref(modeKernel), ref(modeDirect)
		for i := range out {
			s := &out[i]
			if s.Test != test || s.OK == 0 {
				continue
			}
			if k > 0 {
				s.VsKernel = ptr(s.Value.Median / k)
			}
			if d > 0 {
				s.VsDirect = ptr(s.Value.Median / d)
			}
		}
	}
	return out
}

func summarizeOne(samples []Sample, mode, test string) Summary {
	s := Summary{Mode: mode, Test: test, Unit: "Gb/s", Errors: map[string]uint64{}}
	if test == testConn {
		s.Unit = "conn/s"
	}
	var vals, retr, p50, p99, p999, mean, bal, perUnit, machine []float64
	for i := range samples {
		x := &samples[i]
		if x.Mode != mode || x.Test != test {
			continue
		}
		if !x.ok() {
			s.Failed++
			continue
		}
		s.OK++
		vals = append(vals, x.value())
		s.CPUSource = x.CPU.Balancer
		if x.CPU.Machine.TotalS > 0 {
			machine = append(machine, 100*x.CPU.Machine.BusyS()/x.CPU.Machine.TotalS)
		}
		if x.Bulk != nil {
			retr = append(retr, float64(x.Bulk.Retransmits))
		}
		if c := x.Conn; c != nil {
			p50 = append(p50, c.Latency.P50)
			p99 = append(p99, c.Latency.P99)
			p999 = append(p999, c.Latency.P999)
			mean = append(mean, c.Latency.Mean)
			s.Latency.Max = math.Max(s.Latency.Max, c.Latency.Max)
			s.Started += c.Started
			s.Slow += c.Slow
			s.ConnsFailed += c.Failed
			for k, v := range c.Errors {
				s.Errors[k] += v
			}
			s.SynRetrans += x.ClientTCP["TcpExtTCPSynRetrans"]
			s.PAWSReject += x.BackendTCP["TcpExtPAWSTimewait"]
		}
		if b := x.CPU.BalancerS; b != nil && x.WallS > 0 {
			bal = append(bal, 100**b/x.WallS)
			switch {
			case x.Bulk != nil && x.Bulk.Bytes > 0:
				perUnit = append(perUnit, *b*1e3/x.Bulk.totalGB())
				s.CPUUnit = "ms/GB"
			case x.Conn != nil && x.Conn.Started > 0:
				perUnit = append(perUnit, *b*1e6/float64(x.Conn.Started))
				s.CPUUnit = "µs/conn"
			}
		}
	}
	s.Value = rangeOf(vals)
	s.Retransmits = rangeOf(retr)
	if len(p50) > 0 {
		s.Latency.P50 = rangeOf(p50).Median
		s.Latency.P99 = rangeOf(p99).Median
		s.Latency.P999 = rangeOf(p999).Median
		s.Latency.Mean = rangeOf(mean).Median
	}
	if len(bal) > 0 {
		s.BalancerPct = ptr(rangeOf(bal).Median)
	}
	if len(perUnit) > 0 {
		s.CPUPerUnit = ptr(rangeOf(perUnit).Median)
	}
	s.MachinePct = rangeOf(machine).Median
	if len(s.Errors) == 0 {
		s.Errors = nil
	}
	return s
}

// find returns the summary of a mode and test, or nil.
func (r *Results) find(mode, test string) *Summary {
	for i := range r.Summary {
		if r.Summary[i].Mode == mode && r.Summary[i].Test == test {
			return &r.Summary[i]
		}
	}
	return nil
}

// orderOf returns the known names that occur in seen, in the known order,
// then any others in the order seen; a list from the metadata wins.
func orderOf(fromMeta string, known, seen []string) []string {
	if fromMeta != "" {
		var out []string
		for _, f := range strings.Split(fromMeta, ",") {
			if f = strings.TrimSpace(f); f != "" && !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
		return out
	}
	var out []string
	for _, k := range known {
		if slices.Contains(seen, k) {
			out = append(out, k)
		}
	}
	for _, s := range seen {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// buildResults assembles results from samples and metadata.
func buildResults(meta map[string]string, samples []Sample, now time.Time) *Results {
	slices.SortStableFunc(samples, func(a, b Sample) int { return a.Start.Compare(b.Start) })
	var modes, tests []string
	for _, s := range samples {
		if !slices.Contains(modes, s.Mode) {
			modes = append(modes, s.Mode)
		}
		if !slices.Contains(tests, s.Test) {
			tests = append(tests, s.Test)
		}
	}
	r := &Results{
		Schema: resultsSchema, Generated: now.UTC(), Meta: meta, Samples: samples,
		Modes: orderOf(meta["modes"], knownModes(), modes),
		Tests: orderOf(meta["tests"], knownTests(), tests),
	}
	r.Summary = summarize(r)
	return r
}

// readSamples reads every *.json file of dir as a Sample.
func readSamples(dir string) ([]Sample, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	slices.Sort(files)
	var out []Sample
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var s Sample
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, fmt.Errorf("read sample %s: %w", f, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// parseMeta reads "key=value" lines; blank lines and lines starting with
// '#' are skipped, and a repeated key appends to the value with a newline
// (the commands of a run).
func parseMeta(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if old, dup := m[k]; dup {
			m[k] = old + "\n" + v
		} else {
			m[k] = v
		}
	}
	return m
}
