package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the times in /proc/stat and /proc/PID/stat: USER_HZ,
// fixed at 100 by the Linux ABI on every architecture (proc(5), "clock
// ticks"). At 10 ms per tick a 2 s smoke test still resolves 1 %.
const userHZ = 100

func ticks(n uint64) float64 { return float64(n) / userHZ }

// cpuTimes is the aggregate "cpu" line of /proc/stat, in ticks, summed over
// all CPUs.
type cpuTimes struct {
	User, Nice, System, Idle, IOWait, IRQ, SoftIRQ, Steal uint64
	CPUs                                                  int
}

// parseProcStat reads the "cpu" line and counts the "cpuN" lines.
func parseProcStat(s string) (cpuTimes, error) {
	var t cpuTimes
	found := false
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		if f[0] != "cpu" {
			t.CPUs++
			continue
		}
		if len(f) < 9 {
			return t, fmt.Errorf("parse /proc/stat: cpu line has %d fields, want at least 9", len(f))
		}
		vals := make([]uint64, 8)
		for i := range vals {
			v, err := strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				return t, fmt.Errorf("parse /proc/stat: cpu field %d %q: %w", i+1, f[i+1], err)
			}
			vals[i] = v
		}
		t.User, t.Nice, t.System, t.Idle, t.IOWait, t.IRQ, t.SoftIRQ, t.Steal =
			vals[0], vals[1], vals[2], vals[3], vals[4], vals[5], vals[6], vals[7]
		found = true
	}
	if !found {
		return t, fmt.Errorf("parse /proc/stat: no cpu line")
	}
	return t, nil
}

func readProcStat() (cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	return parseProcStat(string(b))
}

// MachineCPU is the CPU time all CPUs spent in each state over a test, in
// seconds (two fully busy CPUs for 10 s give TotalS 20).
type MachineCPU struct {
	CPUs     int     `json:"cpus"`
	UserS    float64 `json:"user_s"` // user + nice
	SystemS  float64 `json:"system_s"`
	SoftirqS float64 `json:"softirq_s"`
	IrqS     float64 `json:"irq_s"`
	StealS   float64 `json:"steal_s"`
	IdleS    float64 `json:"idle_s"` // idle + iowait
	TotalS   float64 `json:"total_s"`
}

// BusyS is everything but idle.
func (m MachineCPU) BusyS() float64 { return m.TotalS - m.IdleS }

// machineDelta turns two /proc/stat readings into a MachineCPU.
func machineDelta(a, b cpuTimes) MachineCPU {
	d := func(x, y uint64) float64 {
		if y < x {
			return 0
		}
		return ticks(y - x)
	}
	m := MachineCPU{
		CPUs:     b.CPUs,
		UserS:    d(a.User+a.Nice, b.User+b.Nice),
		SystemS:  d(a.System, b.System),
		SoftirqS: d(a.SoftIRQ, b.SoftIRQ),
		IrqS:     d(a.IRQ, b.IRQ),
		StealS:   d(a.Steal, b.Steal),
		IdleS:    d(a.Idle+a.IOWait, b.Idle+b.IOWait),
	}
	m.TotalS = m.UserS + m.SystemS + m.SoftirqS + m.IrqS + m.StealS + m.IdleS
	return m
}

// parsePidStat returns utime + stime from the text of /proc/PID/stat: the
// process's own CPU over all its threads, children not included.
func parsePidStat(s string) (uint64, error) {
	// The command name (field 2) may hold spaces and ')': fields are
	// counted from the last ')'.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/PID/stat: no command name")
	}
	f := strings.Fields(s[i+1:])
	// proc(5): utime is field 14, stime 15; f[0] is field 3 (state).
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return 0, fmt.Errorf("parse /proc/PID/stat: %d fields after the name, want more than %d", len(f), stime)
	}
	u, err := strconv.ParseUint(f[utime], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse /proc/PID/stat: utime %q: %w", f[utime], err)
	}
	st, err := strconv.ParseUint(f[stime], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse /proc/PID/stat: stime %q: %w", f[stime], err)
	}
	return u + st, nil
}

// processCPU is the CPU time a running process has used.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time of pid %d: %w", pid, err)
	}
	t, err := parsePidStat(string(b))
	if err != nil {
		return 0, fmt.Errorf("cpu time of pid %d: %w", pid, err)
	}
	return time.Duration(t) * time.Second / userHZ, nil
}

// processName is the command name of a running process (/proc/PID/comm).
func processName(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// parseLoadAvg returns the 1-minute load average of /proc/loadavg.
func parseLoadAvg(s string) (float64, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, fmt.Errorf("parse /proc/loadavg: empty")
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, fmt.Errorf("parse /proc/loadavg: %q: %w", f[0], err)
	}
	return v, nil
}

func readLoadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	v, err := parseLoadAvg(string(b))
	if err != nil {
		return -1
	}
	return v
}

// tcpCounterNames are the client namespace's counters whose change a test
// records: retransmitted SYNs are how a stalled short connection shows up.
func tcpCounterNames() []string {
	return []string{
		"TcpActiveOpens", "TcpAttemptFails", "TcpEstabResets", "TcpRetransSegs", "TcpInErrs", "TcpOutRsts",
		"TcpExtTCPSynRetrans", "TcpExtTCPTimeouts",
	}
}

// backendCounterNames are the backends' counters whose change a test
// records: PAWSTimewait counts SYNs a TIME_WAIT socket refused because their
// timestamps were older, the NAT port-reuse stall (Linux LINUX_MIB_PAWS_TW_REJECTED).
func backendCounterNames() []string {
	return []string{"TcpExtPAWSTimewait", "TcpExtTW", "TcpExtTWRecycled", "TcpExtListenOverflows", "TcpExtListenDrops",
		"TcpPassiveOpens", "TcpOutRsts"}
}

// parseSNMP reads the "Proto: names" / "Proto: values" line pairs of
// /proc/net/snmp and /proc/net/netstat into nstat names (TcpRetransSegs,
// TcpExtTCPSynRetrans). Negative values (Tcp MaxConn -1) are left out.
func parseSNMP(s string) (map[string]uint64, error) {
	m := map[string]uint64{}
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || len(names) != len(values) || names[0] != values[0] || !strings.HasSuffix(names[0], ":") {
			return nil, fmt.Errorf("parse snmp: line %d: not a name/value pair: %q", i+1, lines[i])
		}
		proto := strings.TrimSuffix(names[0], ":")
		for j := 1; j < len(names); j++ {
			if v, err := strconv.ParseUint(values[j], 10, 64); err == nil {
				m[proto+names[j]] = v
			}
		}
	}
	return m, nil
}

// readSNMP reads the counters of the calling process's network namespace.
func readSNMP() (map[string]uint64, error) {
	var b strings.Builder
	for _, p := range []string{"/proc/net/snmp", "/proc/net/netstat"} {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		b.Write(data)
		if len(data) > 0 && data[len(data)-1] != '\n' {
			b.WriteByte('\n')
		}
	}
	return parseSNMP(b.String())
}
