package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The fixed results (testdata/results-fixed.json) hold 2 repetitions of
// iperf3-1 and conn for five modes, with single samples and one failed
// sample (haproxy conn rep 2). Medians, iperf3-1 Gb/s: direct 42, l4raw 21,
// kernel 14, haproxy 8, goproxy 10.5; conn/s: direct 12000, l4raw 9000,
// kernel 6200, haproxy 4500, goproxy 3000.
func fixedResults(t *testing.T) *Results {
	t.Helper()
	r, err := loadResults(filepath.Join("testdata", "results-fixed.json"))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9*math.Max(1, math.Abs(b)) }

func TestSummaryRatios(t *testing.T) {
	r := fixedResults(t)
	for _, tc := range []struct {
		mode, test         string
		ok, failed         int
		median, min, max   float64
		vsKernel, vsDirect float64
	}{
		{modeDirect, testIperf1, 2, 0, 42, 40, 44, 3, 1},
		{modeL4raw, testIperf1, 2, 0, 21, 20, 22, 1.5, 0.5},
		{modeKernel, testIperf1, 1, 0, 14, 14, 14, 1, 1.0 / 3},
		{modeHAProxy, testIperf1, 2, 0, 8, 7, 9, 8.0 / 14, 8.0 / 42},
		{modeGoproxy, testIperf1, 1, 0, 10.5, 10.5, 10.5, 0.75, 0.25},
		{modeDirect, testConn, 1, 0, 12000, 12000, 12000, 12000.0 / 6200, 1},
		{modeKernel, testConn, 2, 0, 6200, 6000, 6400, 1, 6200.0 / 12000},
		{modeHAProxy, testConn, 1, 1, 4500, 4500, 4500, 4500.0 / 6200, 4500.0 / 12000},
	} {
		s := r.find(tc.mode, tc.test)
		if s == nil {
			t.Fatalf("%s %s: no summary", tc.mode, tc.test)
		}
		if s.OK != tc.ok || s.Failed != tc.failed {
			t.Errorf("%s %s: ok %d failed %d, want %d %d", tc.mode, tc.test, s.OK, s.Failed, tc.ok, tc.failed)
		}
		if !near(s.Value.Median, tc.median) || !near(s.Value.Min, tc.min) || !near(s.Value.Max, tc.max) {
			t.Errorf("%s %s: value %+v, want %v (%v-%v)", tc.mode, tc.test, s.Value, tc.median, tc.min, tc.max)
		}
		if s.VsKernel == nil || s.VsDirect == nil || !near(*s.VsKernel, tc.vsKernel) || !near(*s.VsDirect, tc.vsDirect) {
			t.Errorf("%s %s: ratios %v %v, want %v %v", tc.mode, tc.test, s.VsKernel, s.VsDirect, tc.vsKernel, tc.vsDirect)
		}
	}
	k := r.find(modeKernel, testConn)
	if k.Slow != 240 || k.Started != 60050+64050 || k.ConnsFailed != 20 || k.Errors[errConnectTimeout] != 20 {
		t.Errorf("kernel conn counts: slow %d started %d failed %d errors %v", k.Slow, k.Started, k.ConnsFailed, k.Errors)
	}
	if k.PAWSReject != 240 || k.SynRetrans != 250 {
		t.Errorf("kernel conn counters: paws %d syn retrans %d", k.PAWSReject, k.SynRetrans)
	}
	if k.Latency.Max != 3002 || !near(k.Latency.P50, 1.15) {
		t.Errorf("kernel latency %+v: want the largest max and the median p50", k.Latency)
	}
	if k.CPUSource != cpuMachine || k.BalancerPct == nil || !near(*k.BalancerPct, 40) {
		t.Errorf("kernel cpu: %s %v", k.CPUSource, k.BalancerPct)
	}
	d := r.find(modeDirect, testIperf1)
	if d.BalancerPct != nil || d.CPUPerUnit != nil || d.CPUSource != cpuNone || !near(d.MachinePct, 80) {
		t.Errorf("direct cpu: %v %v %s %v", d.BalancerPct, d.CPUPerUnit, d.CPUSource, d.MachinePct)
	}
	l := r.find(modeL4raw, testIperf1)
	// 5 CPU-seconds for 20 Gb/s * 10 s = 25 GB (rep 1) and 27.5 GB (rep 2).
	if l.CPUPerUnit == nil || l.CPUUnit != "ms/GB" || !near(*l.CPUPerUnit, (5000/25.0+5000/27.5)/2) {
		t.Errorf("l4raw cpu per GB %v %s", l.CPUPerUnit, l.CPUUnit)
	}
	lc := r.find(modeL4raw, testConn)
	if lc.CPUPerUnit == nil || lc.CPUUnit != "µs/conn" || !near(*lc.CPUPerUnit, 4e6/90050) {
		t.Errorf("l4raw cpu per conn %v %s", lc.CPUPerUnit, lc.CPUUnit)
	}
}

func TestSummaryWithoutReferences(t *testing.T) {
	r := &Results{Modes: []string{modeL4raw}, Tests: []string{testIperf1}, Samples: []Sample{
		{Mode: modeL4raw, Test: testIperf1, Rep: 1, Bulk: &Bulk{Gbps: 5, Bytes: 1, Seconds: 1}},
	}}
	r.Summary = summarize(r)
	s := r.find(modeL4raw, testIperf1)
	if s.VsKernel != nil || s.VsDirect != nil || s.Value.Median != 5 {
		t.Fatalf("without kernel and direct: %+v", s)
	}
	md := renderMarkdown(r)
	if !strings.Contains(md, "| l4raw | — | — |") {
		t.Errorf("missing ratios not shown as dashes:\n%s", md)
	}
	if err := xml.Unmarshal([]byte(renderSVG(r)), new(svgDoc)); err != nil {
		t.Fatal(err)
	}
}

func TestMarkdownReport(t *testing.T) {
	md := renderMarkdown(fixedResults(t))
	for _, want := range []string{
		"# l4raw benchmark results",
		"| mode | iperf3, 1 stream vs kernel | vs direct | short connections vs kernel | vs direct |",
		"| l4raw | 1.50 | 0.50 | 1.45 | 0.75 |",
		"| haproxy | 0.57 | 0.19 | 0.73 | 0.38 |",
		"| iperf3, 1 stream | direct | 42.0 (40.0–44.0) | 3.00 | 1.00 | 15 (10–20) | — | — | 80 % |",
		"| iperf3, 1 stream | kernel | 14.0 | 1.00 | 0.33 |",
		"| kernel | 6200 (6000–6400) | 1.00 | 0.52 |",
		"240 (0.19 %)", "20 (connect_timeout 20)", " 40 % †", "| 250 | 240 |",
		"| haproxy | 4500 | 0.73 | 0.38 |",
		"![ratios to kernel and to direct](chart.svg)",
		"## Failed samples", "haproxy conn rep 2 attempt 2: parse load json",
		"| machine | Test CPU |",
		"1-minute load average at the start of the tests: median 2.50 (min 2.50, max 3.50).",
		"```\nscripts/bench.sh --reps 2\nl4raw --vip 198.18.0.100:80\n```",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("results.md lacks %q", want)
		}
	}
	if strings.Contains(md, "Smoke run") {
		t.Error("a full run is marked as a smoke run")
	}
	// Every table row has as many cells as its header.
	var cols int
	for _, line := range strings.Split(md, "\n") {
		if !strings.HasPrefix(line, "|") {
			cols = 0
			continue
		}
		n := strings.Count(strings.ReplaceAll(line, `\|`, ""), "|")
		if cols == 0 {
			cols = n
		} else if n != cols {
			t.Errorf("row with %d cells in a table of %d: %s", n-1, cols-1, line)
		}
	}
}

// svgDoc is the part of the chart the tests look at.
type svgDoc struct {
	XMLName xml.Name `xml:"svg"`
	Width   string   `xml:"width,attr"`
	Panels  []struct {
		Ref   string `xml:"data-reference,attr"`
		Rects []struct {
			Height float64 `xml:"height,attr"`
			Title  string  `xml:"title"`
		} `xml:"rect"`
		Texts []string `xml:"text"`
	} `xml:"g"`
}

func TestChart(t *testing.T) {
	r := fixedResults(t)
	out := renderSVG(r)
	var doc svgDoc
	if err := xml.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("chart.svg is not XML: %v", err)
	}
	if len(doc.Panels) != 2 || doc.Panels[0].Ref != modeKernel || doc.Panels[1].Ref != modeDirect {
		t.Fatalf("panels %+v", doc.Panels)
	}
	for _, p := range doc.Panels {
		// One bar per mode and test: 2 tests x 5 modes.
		if len(p.Rects) != 10 {
			t.Errorf("panel %s: %d bars, want 10", p.Ref, len(p.Rects))
		}
	}
	bars := map[string]float64{}
	for _, b := range doc.Panels[0].Rects {
		bars[b.Title] = b.Height
	}
	// Bars are proportional to the ratio: l4raw's 1.5 is 1.5 times kernel's 1.
	k, l := bars["kernel iperf3, 1 stream: 1.00 × kernel"], bars["l4raw iperf3, 1 stream: 1.50 × kernel"]
	if k <= 0 || !near(l/k, 1.5) && math.Abs(l/k-1.5) > 0.01 {
		t.Errorf("bar heights kernel %v l4raw %v (titles %v)", k, l, bars)
	}
	if !strings.Contains(out, "ratio to kernel") || !strings.Contains(out, ">short connections<") {
		t.Error("chart lacks its labels")
	}
}

func TestChartEscapesNames(t *testing.T) {
	r := &Results{Modes: []string{"a<b&c"}, Tests: []string{"t\"1"}, Meta: map[string]string{"smoke": "1"}}
	r.Summary = summarize(r)
	out := renderSVG(r)
	if err := xml.Unmarshal([]byte(out), new(svgDoc)); err != nil {
		t.Fatalf("chart with odd names is not XML: %v\n%s", err, out)
	}
	if !strings.Contains(out, "[smoke run]") {
		t.Error("smoke run not marked")
	}
}

func TestNiceCeil(t *testing.T) {
	for _, tc := range []struct{ in, want float64 }{
		{0, 1}, {0.3, 0.3}, {0.45, 0.5}, {1, 1}, {1.1, 2}, {2.2, 2.5}, {2.53, 3}, {3.4, 4}, {4.5, 5}, {7, 10}, {12, 20}, {0.012, 0.02},
	} {
		if got := niceCeil(tc.in); !near(got, tc.want) {
			t.Errorf("niceCeil(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestMedianAndRange(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want Range
	}{
		{nil, Range{}},
		{[]float64{3}, Range{3, 3, 3}},
		{[]float64{4, 1}, Range{2.5, 1, 4}},
		{[]float64{5, 1, 3}, Range{3, 1, 5}},
		{[]float64{9, 1, 3, 7}, Range{5, 1, 9}},
	} {
		in := append([]float64(nil), tc.in...)
		if got := rangeOf(tc.in); got != tc.want {
			t.Errorf("rangeOf(%v) = %+v, want %+v", tc.in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Errorf("rangeOf sorted its input")
			}
		}
	}
}

func TestParseMeta(t *testing.T) {
	m := parseMeta("# comment\ndate=2026-12-01\n\ncommand=a b\ncommand=c=d\nmachine = x \nno equals sign\n")
	if m["date"] != "2026-12-01" || m["command"] != "a b\nc=d" || m["machine"] != " x " || len(m) != 3 {
		t.Fatalf("%q", m)
	}
}

func TestOrder(t *testing.T) {
	got := orderOf("", knownModes(), []string{"goproxy", "x", "kernel"})
	if strings.Join(got, ",") != "kernel,goproxy,x" {
		t.Errorf("order %v", got)
	}
	if got := orderOf("l4raw, kernel,l4raw", knownModes(), nil); strings.Join(got, ",") != "l4raw,kernel" {
		t.Errorf("order from meta %v", got)
	}
}

// TestReportCommand runs "report" on a directory of samples and re-renders
// the results.json it wrote.
func TestReportCommand(t *testing.T) {
	fixed := fixedResults(t)
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, dirSamples), 0o755)
	for i, s := range fixed.Samples {
		b, _ := json.Marshal(s)
		os.WriteFile(filepath.Join(dir, dirSamples, "s"+string(rune('a'+i))+".json"), b, 0o644)
	}
	os.WriteFile(filepath.Join(dir, fileMeta), []byte("machine=Test CPU\nmodes=direct,l4raw,kernel,haproxy,goproxy\ntests=iperf3-1,conn\n"), 0o644)
	var stdout, stderr bytes.Buffer
	e := env{ctx: t.Context(), stdout: &stdout, stderr: &stderr}
	if code := run(e, []string{"report", "--dir", dir}); code != exitOK {
		t.Fatalf("report: exit %d: %s", code, stderr.String())
	}
	r, err := loadResults(filepath.Join(dir, fileResults))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Samples) != len(fixed.Samples) || r.Meta["machine"] != "Test CPU" || r.Schema != resultsSchema {
		t.Fatalf("results.json: %d samples, meta %v", len(r.Samples), r.Meta)
	}
	if got, want := renderMarkdown(r), renderMarkdown(fixed); !strings.Contains(got, "| l4raw | 1.50 | 0.50 | 1.45 | 0.75 |") {
		t.Errorf("report from samples differs:\n%s\nwant like:\n%s", got, want)
	}
	md1, _ := os.ReadFile(filepath.Join(dir, fileMD))
	out := t.TempDir()
	if code := run(e, []string{"report", "--dir", out, "--in", filepath.Join(dir, fileResults)}); code != exitOK {
		t.Fatalf("report --in: exit %d: %s", code, stderr.String())
	}
	md2, _ := os.ReadFile(filepath.Join(out, fileMD))
	if !bytes.Equal(md1, md2) {
		t.Error("re-rendering results.json changed results.md")
	}
	if _, err := os.Stat(filepath.Join(out, fileResults)); err == nil {
		t.Error("report --in wrote a results.json")
	}
	svg, _ := os.ReadFile(filepath.Join(out, fileSVG))
	if err := xml.Unmarshal(svg, new(svgDoc)); err != nil {
		t.Fatal(err)
	}

	empty := t.TempDir()
	if code := run(env{ctx: t.Context(), stdout: io.Discard, stderr: &stderr}, []string{"report", "--dir", empty}); code != exitFail ||
		!strings.Contains(stderr.String(), "no samples") {
		t.Errorf("report on an empty dir: exit %d, %s", code, stderr.String())
	}
}

func TestFmt(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{{0, "0"}, {0.01234, "0.012"}, {1.234, "1.23"}, {12.34, "12.3"}, {1234.5, "1234"}, {-5.5, "-5.50"}} {
		if got := fmtNum(tc.v); got != tc.want {
			t.Errorf("fmtNum(%v) = %s, want %s", tc.v, got, tc.want)
		}
	}
	for _, tc := range []struct {
		n, of uint64
		want  string
	}{{3, 1000, "3 (0.30 %)"}, {6, 90050, "6 (0.007 %)"}, {0, 10, "0 (0.00 %)"}, {5, 0, "5"}} {
		if got := fmtShare(tc.n, tc.of); got != tc.want {
			t.Errorf("fmtShare(%d, %d) = %s, want %s", tc.n, tc.of, got, tc.want)
		}
	}
	if got := fmtCountRange(Range{2.5, 1, 4}, 2); got != "2.5 (1–4)" {
		t.Errorf("fmtCountRange %s", got)
	}
	if got := fmtErrors(3, map[string]uint64{"reset": 1, "connect_timeout": 2}); got != "3 (connect_timeout 2, reset 1)" {
		t.Errorf("fmtErrors %s", got)
	}
}
