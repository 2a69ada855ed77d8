package main

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func FuzzParseIperf(f *testing.F) {
	for _, name := range []string{"iperf3-2streams.json", "iperf3-error.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"end":{"sum_received":{"seconds":-1,"bytes":5}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseIperf(b)
		if err == nil && (got.Seconds <= 0 || got.Bytes == 0) {
			t.Fatalf("accepted a run without data: %+v", got)
		}
	})
}

func FuzzParseProcStat(f *testing.F) {
	f.Add(procStatA)
	f.Add(procStatB)
	f.Add("cpu 1 2 3 4 5 6 7 8\ncpu0 1\n")
	f.Fuzz(func(t *testing.T, s string) {
		a, err := parseProcStat(s)
		if err != nil {
			return
		}
		if m := machineDelta(a, a); m.TotalS != 0 {
			t.Fatalf("delta of a reading with itself: %+v", m)
		}
	})
}

func FuzzParsePidStat(f *testing.F) {
	f.Add("1234 (l4raw) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 5000")
	f.Add("1 ()) R 1 1 1 1 1 1 1 1 1 1 1 1")
	f.Fuzz(func(t *testing.T, s string) {
		parsePidStat(s) // must not panic
	})
}

func FuzzParseSNMP(f *testing.F) {
	f.Add("Tcp: A B\nTcp: 1 2\nTcpExt: C\nTcpExt: 3\n")
	f.Add("Ip: x\n")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseSNMP(s)
		if err == nil && m == nil {
			t.Fatal("nil map without an error")
		}
	})
}

func FuzzParseSmall(f *testing.F) {
	f.Add("2.18 2.71 3.56 3/412 14328")
	f.Add("198.18.0.1:80,198.18.0.2:8080")
	f.Add("command=a\ncommand=b\n# x\n")
	f.Fuzz(func(t *testing.T, s string) {
		parseLoadAvg(s)
		if aps, err := parseAddrPorts(s); err == nil {
			for _, ap := range aps {
				if !ap.Addr().Is4() || ap.Port() == 0 {
					t.Fatalf("accepted %v", ap)
				}
			}
		}
		if as, err := parseAddrs(s); err == nil {
			for _, a := range as {
				if !a.Is4() {
					t.Fatalf("accepted %v", a)
				}
			}
		}
		for k := range parseMeta(s) {
			if strings.ContainsAny(k, "=\n") {
				t.Fatalf("meta key %q", k)
			}
		}
	})
}

// FuzzReport renders arbitrary results: no panic, and the chart is always
// well-formed XML whatever the names in it.
func FuzzReport(f *testing.F) {
	b, err := os.ReadFile(filepath.Join("testdata", "results-fixed.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"modes":["a<b","\u0001"],"tests":["conn","x&y"],"samples":[{"mode":"a<b","test":"conn","conn":{"workers":1,"conn_per_s":-1}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Results
		if json.Unmarshal(b, &r) != nil || len(r.Modes) > 50 || len(r.Tests) > 50 {
			return
		}
		r.Summary = summarize(&r)
		renderMarkdown(&r)
		if err := xml.Unmarshal([]byte(renderSVG(&r)), new(svgDoc)); err != nil {
			t.Fatalf("chart is not XML: %v", err)
		}
	})
}
