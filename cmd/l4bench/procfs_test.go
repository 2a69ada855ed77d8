package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A /proc/stat of a 2-CPU machine (Linux 6.x layout: 10 numbers per line).
const procStatA = `cpu  1000 50 400 8000 20 0 100 5 0 0
cpu0 500 25 200 4000 10 0 50 3 0 0
cpu1 500 25 200 4000 10 0 50 2 0 0
intr 12345 0 0
ctxt 99999
btime 1796150000
`

const procStatB = `cpu  1300 50 600 8400 20 0 250 5 0 0
cpu0 650 25 300 4200 10 0 125 3 0 0
cpu1 650 25 300 4200 10 0 125 2 0 0
`

func TestParseProcStat(t *testing.T) {
	a, err := parseProcStat(procStatA)
	if err != nil {
		t.Fatal(err)
	}
	want := cpuTimes{User: 1000, Nice: 50, System: 400, Idle: 8000, IOWait: 20, SoftIRQ: 100, Steal: 5, CPUs: 2}
	if a != want {
		t.Fatalf("got %+v, want %+v", a, want)
	}
	b, _ := parseProcStat(procStatB)
	m := machineDelta(a, b)
	if m.UserS != 3 || m.SystemS != 2 || m.SoftirqS != 1.5 || m.IdleS != 4 || m.TotalS != 10.5 || m.BusyS() != 6.5 || m.CPUs != 2 {
		t.Fatalf("delta %+v", m)
	}
	if z := machineDelta(b, a); z.TotalS != 0 {
		t.Fatalf("a counter going back gave %+v, want zeros", z)
	}
	for _, bad := range []string{"", "intr 1 2 3\n", "cpu 1 2 3\n", "cpu 1 2 3 x 5 6 7 8\n"} {
		if _, err := parseProcStat(bad); err == nil {
			t.Errorf("parseProcStat(%q): no error", bad)
		}
	}
}

func TestParsePidStat(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     uint64
		ok       bool
	}{
		{"plain", "1234 (l4raw) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 5000 1000000 500 18446744073709551615", 325, true},
		{"name with spaces and parens", "42 (a) b (c) R 1 42 42 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 1 1 1", 10, true},
		{"truncated", "42 (x) R 1 2 3", 0, false},
		{"no name", "42 x R", 0, false},
		{"bad number", "42 (x) R 1 1 1 0 -1 0 0 0 0 0 u 3", 0, false},
	} {
		got, err := parsePidStat(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("%s: got %d, %v; want %d ok=%v", tc.name, got, err, tc.want, tc.ok)
		}
	}
}

func TestProcessCPUOfSelf(t *testing.T) {
	d, err := processCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if d < 0 || d > time.Hour {
		t.Fatalf("cpu of this test %v", d)
	}
	if processName(os.Getpid()) == "?" {
		t.Error("no command name for this process")
	}
	if _, err := processCPU(0x7fffffff); err == nil {
		t.Error("cpu of a process that does not exist: no error")
	}
}

func TestParseLoadAvg(t *testing.T) {
	if v, err := parseLoadAvg("2.18 2.71 3.56 3/412 14328\n"); err != nil || v != 2.18 {
		t.Fatalf("got %v, %v", v, err)
	}
	for _, bad := range []string{"", "x 1 2"} {
		if _, err := parseLoadAvg(bad); err == nil {
			t.Errorf("parseLoadAvg(%q): no error", bad)
		}
	}
	if v := readLoadAvg(); v < 0 {
		t.Errorf("readLoadAvg %v", v)
	}
}

func TestParseSNMP(t *testing.T) {
	in := `Ip: Forwarding DefaultTTL
Ip: 1 64
Tcp: RtoAlgorithm MaxConn ActiveOpens RetransSegs
Tcp: 1 -1 500 7
TcpExt: SyncookiesSent PAWSTimewait TCPSynRetrans
TcpExt: 0 12 9
`
	m, err := parseSNMP(in)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]uint64{"TcpActiveOpens": 500, "TcpRetransSegs": 7, "TcpExtPAWSTimewait": 12, "TcpExtTCPSynRetrans": 9, "IpDefaultTTL": 64} {
		if m[k] != v {
			t.Errorf("%s = %d, want %d", k, m[k], v)
		}
	}
	if _, ok := m["TcpMaxConn"]; ok {
		t.Error("negative MaxConn kept")
	}
	if _, err := parseSNMP("Tcp: A B\nUdp: 1 2\n"); err == nil {
		t.Error("mismatched pair: no error")
	}
	live, err := readSNMP()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range tcpCounterNames() {
		if _, ok := live[k]; !ok {
			t.Errorf("this kernel has no counter %s", k)
		}
	}
	d := counterDelta(map[string]uint64{"a": 1, "b": 5}, map[string]uint64{"a": 4, "b": 2}, []string{"a", "b", "c"})
	if d["a"] != 3 || len(d) != 2 {
		t.Errorf("delta %v: want a=3, c=0, b left out (went back)", d)
	}
	if counterDelta(nil, d, []string{"a"}) != nil {
		t.Error("delta without a first reading")
	}
}

func TestParseIperf(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "iperf3-2streams.json"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseIperf(b)
	if err != nil {
		t.Fatal(err)
	}
	// From the file: sum_received 500177544 bytes in 1.052947 s, sum_sent 358 retransmits.
	if got.Streams != 2 || got.Bytes != 500177544 || got.Retransmits != 358 || got.SenderCC != "cubic" || got.ReceiverCC != "cubic" ||
		!near(got.Gbps, 3.800210601293322) || !near(got.SenderGbps, 3.85321710257002) || got.Seconds != 1.052947 {
		t.Fatalf("got %+v", got)
	}
	if !near(got.totalGB(), 0.500177544) {
		t.Errorf("totalGB %v", got.totalGB())
	}
	omit := Bulk{Bytes: 10e9, Seconds: 10, OmitS: 1}
	if !near(omit.totalGB(), 11) {
		t.Errorf("totalGB with 1 s omitted: %v, want 11", omit.totalGB())
	}

	b, err = os.ReadFile(filepath.Join("testdata", "iperf3-error.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseIperf(b); err == nil || !strings.Contains(err.Error(), "unable to connect to server") {
		t.Errorf("error output: %v", err)
	}
	for _, bad := range []string{"", "{", `{"end": {}}`, `{"end":{"sum_received":{"seconds":1,"bytes":0}}}`} {
		if _, err := parseIperf([]byte(bad)); err == nil {
			t.Errorf("parseIperf(%q): no error", bad)
		}
	}
}
