package firewall

import (
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/l4raw/l4raw/pkg/packet"
)

// MinNATPorts is the smallest NAT port range DefaultNATRange accepts. Each NAT port
// carries one flow per backend address:port at a time, and a port should rest while
// the backend may still hold TIME_WAIT for it (Linux TCP_TIMEWAIT_LEN, 60 s), so 1024
// ports sustain about 17 new connections per second per backend without reuse.
const MinNATPorts = 1024

// Kernel files that describe which local ports the kernel picks by itself
// (Documentation/networking/ip-sysctl.rst). Paths are relative to the root of the
// fs.FS handed to ReadKernelPorts.
const (
	localPortRangeFile    = "proc/sys/net/ipv4/ip_local_port_range"
	localReservedPortFile = "proc/sys/net/ipv4/ip_local_reserved_ports"
)

// PortRange is l4raw's port range type.
type PortRange = packet.PortRange

// ParsePortRange parses "80" or "61000-65535"; port 0 is refused.
func ParsePortRange(s string) (PortRange, error) {
	r, err := packet.ParsePortRange(s)
	if err != nil {
		return PortRange{}, fmt.Errorf("firewall: %w", err)
	}
	return r, nil
}

// parseRange parses a range from a kernel file, which may list port 0.
func parseRange(s string) (PortRange, error) { return packet.ParseRangeSyntax(s) }

// ReadKernelPorts reads the kernel's ephemeral port range and its reserved ports
// from fsys (os.DirFS("/") in production). Both files are per network namespace,
// so they describe the namespace the process runs in.
func ReadKernelPorts(fsys fs.FS) (ephemeral PortRange, reserved []PortRange, err error) {
	b, err := fs.ReadFile(fsys, localPortRangeFile)
	if err != nil {
		return PortRange{}, nil, fmt.Errorf("firewall: read kernel ports: %w", err)
	}
	ephemeral, err = parseLocalPortRange(string(b))
	if err != nil {
		return PortRange{}, nil, err
	}
	b, err = fs.ReadFile(fsys, localReservedPortFile)
	if err != nil {
		return PortRange{}, nil, fmt.Errorf("firewall: read kernel ports: %w", err)
	}
	reserved, err = parseReservedPorts(string(b))
	if err != nil {
		return PortRange{}, nil, err
	}
	return ephemeral, reserved, nil
}

// parseLocalPortRange reads ip_local_port_range: two numbers separated by a tab.
func parseLocalPortRange(s string) (PortRange, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return PortRange{}, fmt.Errorf("firewall: ip_local_port_range %q: want two ports", s)
	}
	r, err := packet.ParseRangeSyntax(f[0] + "-" + f[1])
	if err == nil {
		err = r.Valid()
	}
	if err != nil {
		return PortRange{}, fmt.Errorf("firewall: ip_local_port_range %q: %w", s, err)
	}
	return r, nil
}

// parseReservedPorts reads ip_local_reserved_ports: comma-separated ports and
// ranges ("8080,61000-65535"), empty when nothing is reserved.
func parseReservedPorts(s string) ([]PortRange, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var out []PortRange
	for _, e := range strings.Split(s, ",") {
		r, err := parseRange(strings.TrimSpace(e))
		if err != nil {
			return nil, fmt.Errorf("firewall: ip_local_reserved_ports %q: %w", s, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// lastFree is the highest port of eph that the kernel may hand out, that is not
// reserved; eph.Lo-1 if all of eph is reserved.
func lastFree(eph PortRange, reserved []PortRange) int {
	p := int(eph.Hi)
	// Each round steps below one reserved range, so len(reserved)+1 rounds suffice.
	for range len(reserved) + 1 {
		if p < int(eph.Lo) {
			break
		}
		r, ok := reservedAt(uint16(p), reserved)
		if !ok {
			break
		}
		p = int(r.Lo) - 1
	}
	return max(p, int(eph.Lo)-1)
}

func reservedAt(p uint16, reserved []PortRange) (PortRange, bool) {
	for _, r := range reserved {
		if r.Contains(p) {
			return r, true
		}
	}
	return PortRange{}, false
}

// DefaultNATRange picks the ports above the kernel's ephemeral range (hi+1..65535,
// 61000-65535 with the kernel default 32768-60999). Reserved ports at the top of the
// ephemeral range count as free, since the kernel never hands them out. Fewer than
// MinNATPorts ports is an error that says how to fix it.
func DefaultNATRange(eph PortRange, reserved []PortRange) (PortRange, error) {
	if err := eph.Valid(); err != nil {
		return PortRange{}, fmt.Errorf("firewall: ephemeral ports: %w", err)
	}
	top := lastFree(eph, reserved)
	if n := 65535 - top; n < MinNATPorts {
		return PortRange{}, fmt.Errorf("firewall: only %d ports above the kernel's ephemeral ports %s (need %d): "+
			"set --nat-ports LO-HI and reserve it with sysctl -w net.ipv4.ip_local_reserved_ports=LO-HI", n, eph, MinNATPorts)
	}
	return PortRange{Lo: uint16(top + 1), Hi: 65535}, nil
}

// CheckNATRange fails if nat shares ports with the ephemeral range that are not
// reserved: the guard drops every segment to the SNAT address on a NAT port, so a
// host connection that the kernel gave such a local port would hang.
func CheckNATRange(nat, eph PortRange, reserved []PortRange) error {
	if err := nat.Valid(); err != nil {
		return fmt.Errorf("firewall: nat ports: %w", err)
	}
	lo, hi := max(nat.Lo, eph.Lo), min(nat.Hi, eph.Hi)
	if lo > hi || covered(PortRange{Lo: lo, Hi: hi}, reserved) {
		return nil
	}
	fix := make([]string, 0, len(reserved)+1)
	for _, r := range reserved {
		fix = append(fix, r.String())
	}
	fix = append(fix, nat.String())
	return fmt.Errorf("firewall: nat ports %s overlap the kernel's ephemeral ports %s: "+
		"pick ports outside it or reserve them with sysctl -w net.ipv4.ip_local_reserved_ports=%s",
		nat, eph, strings.Join(fix, ","))
}

// covered reports whether every port of r lies in one of the reserved ranges.
func covered(r PortRange, reserved []PortRange) bool {
	rs := slices.Clone(reserved)
	slices.SortFunc(rs, func(a, b PortRange) int { return int(a.Lo) - int(b.Lo) })
	next := int(r.Lo) // first port not yet known to be covered
	for _, x := range rs {
		if int(x.Lo) > next {
			break
		}
		next = max(next, int(x.Hi)+1)
		if next > int(r.Hi) {
			return true
		}
	}
	return next > int(r.Hi)
}
