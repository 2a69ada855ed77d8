package packet

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// PortRange is an inclusive range of TCP ports; a single port has Lo == Hi.
// It is the one port-range type of l4raw: service ports, NAT ports, filter
// and guard rules all use it.
type PortRange struct{ Lo, Hi uint16 }

// ParsePortRange parses "80" or "61000-65535" (digits only). Port 0 is
// refused: no TCP segment carries it, so a range containing it is a typo.
func ParsePortRange(s string) (PortRange, error) {
	r, err := ParseRangeSyntax(s)
	if err == nil && r.Lo == 0 {
		err = errors.New("port 0 is not a tcp port")
	}
	if err != nil {
		return PortRange{}, fmt.Errorf("port range %q: %w", s, err)
	}
	return r, nil
}

// ParseRangeSyntax is ParsePortRange without the port-0 rule and without
// context in its errors: for kernel files, which may list port 0.
func ParseRangeSyntax(s string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := parsePort(lo)
	if err != nil {
		return PortRange{}, err
	}
	if !isRange {
		return PortRange{Lo: a, Hi: a}, nil
	}
	b, err := parsePort(hi)
	if err != nil {
		return PortRange{}, err
	}
	if a > b {
		return PortRange{}, errors.New("low end above high end")
	}
	return PortRange{Lo: a, Hi: b}, nil
}

func parsePort(s string) (uint16, error) {
	// strconv accepts "+80"; a port is digits only.
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("bad port %q", s)
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("bad port %q: above 65535", s)
	}
	return uint16(n), nil
}

// String gives "80" for a single port and "61000-65535" for a range: the
// form ParsePortRange reads, nft prints and ip_local_reserved_ports takes.
func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return strconv.Itoa(int(r.Lo)) + "-" + strconv.Itoa(int(r.Hi))
}

// IsZero reports whether r is the zero value (no range).
func (r PortRange) IsZero() bool { return r == PortRange{} }

// Len is the number of ports in r (0 for the zero value or an inverted range).
func (r PortRange) Len() int {
	if r.IsZero() || r.Lo > r.Hi {
		return 0
	}
	return int(r.Hi) - int(r.Lo) + 1
}

// Contains reports whether p lies in r.
func (r PortRange) Contains(p uint16) bool { return !r.IsZero() && r.Lo <= p && p <= r.Hi }

// Valid reports why r is not a usable range, or nil.
func (r PortRange) Valid() error {
	switch {
	case r.Lo == 0:
		return fmt.Errorf("port range %d-%d: port 0 is not a tcp port", r.Lo, r.Hi)
	case r.Lo > r.Hi:
		return fmt.Errorf("port range %d-%d: low end above high end", r.Lo, r.Hi)
	}
	return nil
}

// MarshalText makes a PortRange a plain scalar in YAML and JSON.
func (r PortRange) MarshalText() ([]byte, error) {
	if err := r.Valid(); err != nil {
		return nil, err
	}
	return []byte(r.String()), nil
}

// UnmarshalText is ParsePortRange for decoders.
func (r *PortRange) UnmarshalText(b []byte) error {
	v, err := ParsePortRange(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}
