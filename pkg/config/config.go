// Package config defines the balancer's Spec: plain, validated data built from
// command-line flags (FromFlags) or a YAML document (Parse).
//
// The package opens no files and no sockets: callers pass bytes or flag values,
// and get back a Spec whose every field has been checked. Kernel work (guard
// rules, sockets, NAT port reservation) happens later, in the packages that
// consume the Spec.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/l4raw/l4raw/pkg/packet"
)

// ErrNotSupported marks a value that names a feature the file format reserves
// but this version does not implement yet (IPv6 services, backends and SNAT
// addresses). Callers may branch on it with errors.Is.
var ErrNotSupported = errors.New("not supported yet")

// Mode is how a service rewrites packets.
type Mode uint8

const (
	// ModeFullNAT rewrites both source and destination. Backends reply to the
	// balancer's SNAT address, so it works on one LAN with no routing changes;
	// backends do not see the client address. It is the zero value and the
	// default.
	ModeFullNAT Mode = iota
	// ModeDNAT rewrites only the destination. Backends see the client address
	// and must route replies back through the balancer.
	ModeDNAT
)

// String returns the name used in files and flags: "fullnat" or "dnat".
func (m Mode) String() string {
	switch m {
	case ModeFullNAT:
		return "fullnat"
	case ModeDNAT:
		return "dnat"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// ParseMode parses "fullnat" or "dnat" (case-insensitive).
func ParseMode(s string) (Mode, error) {
	m, ok := lookupMode(s)
	if !ok {
		return 0, fmt.Errorf("config: mode %s: %w", quote(s), errors.New(msgUnknownMode))
	}
	return m, nil
}

func lookupMode(s string) (Mode, bool) {
	for _, m := range []Mode{ModeFullNAT, ModeDNAT} {
		if strings.EqualFold(s, m.String()) {
			return m, true
		}
	}
	return 0, false
}

// PortRange is an inclusive range of TCP ports (l4raw's one port-range
// type). In a Spec the zero value means "auto": the caller picks the range
// (for NAT ports, one outside the kernel's ephemeral range).
type PortRange = packet.PortRange

// ParsePortRange parses "61000-65535", a single port "8080", or "auto" (the
// zero value). It checks syntax only; Validate checks the bounds.
func ParsePortRange(s string) (PortRange, error) {
	r, ok := parsePortRange(s)
	if !ok {
		return PortRange{}, fmt.Errorf("config: port range %s: %w", quote(s), errors.New(msgBadPortRange))
	}
	return r, nil
}

func parsePortRange(s string) (PortRange, bool) {
	s = strings.TrimSpace(s)
	if s == "auto" {
		return PortRange{}, true
	}
	lo, hi, isRange := strings.Cut(s, "-")
	l, ok := parsePortNumber(strings.TrimSpace(lo))
	if !ok {
		return PortRange{}, false
	}
	if !isRange {
		return PortRange{Lo: l, Hi: l}, true
	}
	h, ok := parsePortNumber(strings.TrimSpace(hi))
	if !ok {
		return PortRange{}, false
	}
	return PortRange{Lo: l, Hi: h}, true
}

// formatPortRange formats r the way ParsePortRange reads it ("auto" for the
// zero value).
func formatPortRange(r PortRange) string {
	if r.IsZero() {
		return "auto"
	}
	return r.String()
}

// Timeouts bound how long an idle connection-table entry lives in each phase
// of a TCP connection.
type Timeouts struct {
	SYN         time.Duration // handshake not finished (IPVS SYN_SENT/SYN_RECV)
	Established time.Duration // idle established connection
	FIN         time.Duration // one side closed (IPVS FIN_WAIT/CLOSE_WAIT)
	TimeWait    time.Duration // both FINs seen
	Close       time.Duration // after a RST
}

// DefaultTimeouts follows IPVS (net/netfilter/ipvs/ip_vs_proto_tcp.c:
// SYN_RECV 60 s, ESTABLISHED 15 min, FIN_WAIT 2 min, CLOSE 10 s) except for
// TimeWait: IPVS keeps 2 min, but in full NAT the entry pins a NAT port, so we
// only linger 10 s for the last ACK and retransmitted FINs.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		SYN:         60 * time.Second,
		Established: 15 * time.Minute,
		FIN:         2 * time.Minute,
		TimeWait:    10 * time.Second,
		Close:       10 * time.Second,
	}
}

// Health check types, the values of Health.Type.
const (
	// HealthTCP passes when the backend accepts a connection; the check
	// closes with a FIN.
	HealthTCP = "tcp"
	// HealthHTTP passes when an HTTP/1.1 GET of Path answers with Status.
	HealthHTTP = "http"
	// HealthSendExpect passes when the backend answers Send (or, with Send
	// empty, greets) with a reply starting with Expect.
	HealthSendExpect = "send-expect"
)

// Health describes the checks of a service's backends: the active check,
// and the passive one that watches the service's own traffic. The fields
// after Passive belong to one type each; Validate rejects them for another.
type Health struct {
	Type     string        // HealthTCP, HealthHTTP or HealthSendExpect; "" = "tcp"
	Interval time.Duration // start-to-start time between two checks of one backend
	Timeout  time.Duration // one check's limit; must be below Interval
	Rise     int           // consecutive successes that bring a down backend up
	Fall     int           // consecutive failures that take an up backend down
	Port     uint16        // 0 = the backend's port
	// Passive is the number of failed new client connections to a backend
	// within one second (refused with a RST, or left unanswered until the
	// client retransmits its SYN) that count as one failed check; Fall such
	// seconds take the backend down, as Fall failed active checks do.
	// Passive checks see a dead backend as soon as clients try it, between
	// two active checks. 0 disables them; 0..MaxPassive.
	Passive int

	Path   string // http: request path, with its query if any; "" = "/"
	Status int    // http: status that means healthy, 100..599; 0 = 200
	Host   string // http: Host header; "" = the backend's address
	Send   string // send-expect: bytes written once connected; "" = only read (a banner)
	Expect string // send-expect: required prefix of the reply; must not be empty
}

// DefaultHealth follows HAProxy's `check` defaults (inter 2s, rise 2, fall 3)
// with a 1 s timeout (glb-director uses the same 2 s / 1 s pair), so a dead
// backend is out after about 6 s and a recovered one is back after about 4 s.
// Passive checks are on with DefaultPassive.
func DefaultHealth() Health {
	return Health{Type: HealthTCP, Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3, Passive: DefaultPassive}
}

// DefaultPassive is the default of Health.Passive: HAProxy's `observe
// layer4` default error-limit is 10 consecutive errors; 3 failures within a
// second is stricter, because each one is a client that waited for a
// retransmission or saw a refusal, yet one lost SYN (a single retransmission)
// still does not count as a failed check.
const DefaultPassive = 3

// Backend states, the values of Backend.State.
const (
	// StateReady takes new connections. It is the default.
	StateReady = "ready"
	// StateDrain takes no new connections; existing ones continue, as with
	// weight 0 (IPVS quiescent, HAProxy drain).
	StateDrain = "drain"
	// StateMaint is out of service: no new connections, and the existing
	// ones are kept or reset as the service's MaintFlows says (HAProxy
	// maint).
	StateMaint = "maint"
)

// What a service does with the connections of a backend put in maint, the
// values of Service.MaintFlows.
const (
	// MaintFlowsKeep lets them continue to their end. It is the default:
	// taking a backend out must not break clients unless asked to.
	MaintFlowsKeep = "keep"
	// MaintFlowsReset answers their next packets with RSTs, so clients
	// reconnect (to another backend) at once instead of hanging.
	MaintFlowsReset = "reset"
)

// Backend is one real server behind a service.
type Backend struct {
	// Addr is the backend's address. Port 0 means "the port the client
	// connected to", which is the only choice for a multi-port service.
	Addr netip.AddrPort
	// Weight is the scheduler's share, 0..65535. Parse and FromFlags default
	// it to 1; 0 makes the backend quiescent (no new connections, existing
	// ones continue, as in IPVS). A Backend built by hand with no Weight is
	// therefore quiescent.
	Weight int
	// State is StateReady, StateDrain or StateMaint; "" = StateReady. It
	// is the state the backend starts in; the runtime API may change it.
	State string
}

// Target returns the backend address for a connection to service port p:
// Addr itself, or Addr's address with port p when Addr has port 0.
func (b Backend) Target(p uint16) netip.AddrPort {
	if b.Addr.Port() != 0 {
		return b.Addr
	}
	return netip.AddrPortFrom(b.Addr.Addr(), p)
}

// Service is one virtual address with its ports and backends.
type Service struct {
	Name  string     // unique; "" = "VIP:PORT" of the first port
	VIP   netip.Addr // IPv4 for now
	Ports []uint16   // at least one; every port maps to the same backends
	Mode  Mode
	// Scheduler is one of sched.Names(): rr, wrr, lc, random, sh or
	// maglev; "" = "rr".
	Scheduler string
	// MaintFlows is MaintFlowsKeep or MaintFlowsReset: what happens to the
	// connections of a backend put in maint; "" = MaintFlowsKeep.
	MaintFlows string
	Backends   []Backend
	// Health is this service's check; the zero value takes Spec.Health.
	Health Health
}

// CheckAddr is the address the health check of b connects to: Health.Port if
// set, else the backend's port, else (a backend without a port) the service's
// first port.
func (s Service) CheckAddr(b Backend) netip.AddrPort {
	if s.Health.Port != 0 {
		return netip.AddrPortFrom(b.Addr.Addr(), s.Health.Port)
	}
	var first uint16
	if len(s.Ports) > 0 {
		first = s.Ports[0]
	}
	return b.Target(first)
}

// Spec is the whole validated configuration.
type Spec struct {
	Services   []Service
	Interfaces []string     // empty = auto (the interfaces routes to VIPs and backends use)
	SNAT       []netip.Addr // empty = auto (the host's source address toward the backends)
	NATPorts   PortRange    // zero = auto (chosen by the caller outside the kernel's ephemeral range)
	MaxConns   int          // connection-table capacity
	Timeouts   Timeouts
	Health     Health // defaults for services; each service may override fields
	Guard      bool   // install the raw-prerouting drop that keeps the kernel out
	Workers    int    // 0 = number of CPUs
	LogLevel   slog.Level
	LogFormat  string // "text" or "json"; "" = "text"
	// API is the runtime API's listen address (HTTP/JSON and /metrics),
	// IP:PORT with an IP literal, or APIOff; "" = DefaultAPI. The API has
	// no authentication, so the default keeps it on loopback.
	API string
	// VIPARP is VIPARPAuto, VIPARPOn or VIPARPOff: whether l4raw claims a
	// free LAN address as the VIP by answering ARP for it (RFC 5227 probe,
	// gratuitous ARP), so the host needs no `ip addr add`. "" = auto.
	VIPARP string
}

// DefaultAPI is the default runtime API address: loopback only, because the
// API has no authentication and can change the balancer. The port is in the
// range Prometheus exporters use (9100-9999); it is the address `l4raw ctl`
// tries by default, so the two must agree.
const DefaultAPI = "127.0.0.1:9478"

// APIOff as Spec.API disables the runtime API.
const APIOff = "off"

// Values of Spec.VIPARP: whether l4raw answers ARP for a VIP itself.
const (
	// VIPARPAuto claims a VIP that is not a local address but lies in a
	// connected subnet; a local VIP is used as it is. The default.
	VIPARPAuto = "auto"
	// VIPARPOn claims every VIP; a VIP that is a local address is an error.
	VIPARPOn = "on"
	// VIPARPOff never claims: every VIP must be a local address.
	VIPARPOff = "off"
)

// DefaultMaxConns is the default connection-table capacity: 2^20 entries,
// enough for a million concurrent connections, or for a flood of ~17k
// unanswered SYNs per second held for the 60 s SYN timeout.
const DefaultMaxConns = 1 << 20

// Default returns a Spec with every default filled in and no services.
func Default() Spec {
	return Spec{
		MaxConns:  DefaultMaxConns,
		Timeouts:  DefaultTimeouts(),
		Health:    DefaultHealth(),
		Guard:     true,
		LogLevel:  slog.LevelInfo,
		LogFormat: "text",
		API:       DefaultAPI,
		VIPARP:    VIPARPAuto,
	}
}
