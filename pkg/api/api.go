// Package api is l4raw's runtime control plane: a small HTTP/JSON API that
// shows and changes a running balancer, the Prometheus metrics endpoint, and
// a client for both (the one `l4raw ctl` uses).
//
// The daemon implements Controller; NewServer serves it. Everything the API
// can change goes through Controller, so the server holds no state of its
// own and the same Controller can be tested without sockets.
//
// The API can take backends out of rotation, so it listens on the loopback
// address by default (DefaultAddr): anyone who can reach it controls the
// balancer. It has no authentication of its own. Bind it elsewhere only
// behind a firewall or an authenticating proxy. Cross-origin browser
// requests that would change state are refused, so a web page cannot drive
// it through a browser on the balancer host.
package api

import (
	"errors"
	"net/netip"
	"time"

	"github.com/l4raw/l4raw/pkg/config"
)

// DefaultAddr is where the daemon listens and where `l4raw ctl` looks unless
// told otherwise: loopback only, because the API can change the balancer.
// The port is in the range Prometheus exporters use (9100-9999); that range
// is fully allocated on the exporters' wiki list, so another exporter on the
// same host may want it too: move one with --api.
const DefaultAddr = "127.0.0.1:9478"

// Errors a Controller wraps so the server picks the HTTP status, and that
// the Client's errors match with errors.Is.
var (
	ErrNotFound = errors.New("not found")      // 404: no such service, backend or flow
	ErrInvalid  = errors.New("invalid")        // 400: a value the balancer cannot take
	ErrExists   = errors.New("already exists") // 409: adding a backend the service has
)

// Backend administrative states, as in HAProxy's runtime API ("set server
// state ready|drain|maint").
const (
	// StateReady takes new connections when healthy.
	StateReady = "ready"
	// StateDrain takes no new connections; existing ones continue and health
	// checks go on, so the backend can be put back at once.
	StateDrain = "drain"
	// StateMaint takes no new connections and is not checked: the backend
	// is being worked on.
	StateMaint = "maint"
)

// Health states of a backend's active check.
const (
	HealthUp      = "up"
	HealthDown    = "down"
	HealthUnknown = "unknown" // not checked yet, or not checked (maint)
)

// Weight bounds: those of the config file (the range ipvsadm(8) accepts);
// 0 is quiescent (no new connections), as in IPVS.
const (
	MinWeight     = 0
	MaxWeight     = config.MaxWeight
	DefaultWeight = 1 // what a backend added without a weight gets, as in the config file
)

// Flow listing limits: a page defaults to DefaultFlowLimit entries and holds
// at most MaxFlowLimit, which keeps one answer below about 2 MB of JSON
// (a flow is about 170 bytes).
const (
	DefaultFlowLimit = 100
	MaxFlowLimit     = 10000
)

// BackendInfo is one backend of one service as the API shows it.
type BackendInfo struct {
	Service string `json:"service"`
	// Address is "IP:PORT", or "IP" for a backend that takes the port the
	// client connected to (a multi-port service).
	Address      string  `json:"address"`
	Weight       int     `json:"weight"`
	State        string  `json:"state"`  // StateReady, StateDrain or StateMaint
	Health       string  `json:"health"` // HealthUp, HealthDown or HealthUnknown
	HealthReason string  `json:"health_reason"`
	CheckLatency float64 `json:"check_latency_seconds"` // duration of the last active check
	Active       int64   `json:"active"`                // its connections in the table now
	Established  int64   `json:"established"`           // of those, ESTABLISHED (IPVS's ActiveConn; the rest is InActConn)
	Conns        uint64  `json:"conns_total"`           // connections scheduled to it
	PktsIn       uint64  `json:"packets_in"`            // client to backend
	BytesIn      uint64  `json:"bytes_in"`
	PktsOut      uint64  `json:"packets_out"` // backend to client
	BytesOut     uint64  `json:"bytes_out"`
	NATPorts     int     `json:"nat_ports"` // NAT ports it holds now (full NAT)
}

// ServiceInfo is one service (a VIP and its ports) with its backends.
type ServiceInfo struct {
	Name      string        `json:"name"`
	VIP       string        `json:"vip"`
	Ports     []uint16      `json:"ports"`
	Mode      string        `json:"mode"`      // fullnat or dnat
	Scheduler string        `json:"scheduler"` // rr, ...
	Backends  []BackendInfo `json:"backends"`
}

// Status is the daemon as a whole.
type Status struct {
	Version   string    `json:"version"`
	Commit    string    `json:"commit"`
	StartedAt time.Time `json:"started_at"`
	Services  int       `json:"services"`
	Conns     int       `json:"conns"`      // connections in the table
	ConnLimit int       `json:"conn_limit"` // the table's capacity (--max-conns)
	// Counters are the daemon's counters under the names its counter dump
	// prints: rx_frames, tx_bytes, conns_new, drop_no_flow,
	// malformed_runt, socket_kernel_drops, ...
	Counters map[string]uint64 `json:"counters"`
}

// FlowInfo is one connection in the table.
type FlowInfo struct {
	Service     string  `json:"service"`
	Client      string  `json:"client"`  // IP:PORT
	VIP         string  `json:"vip"`     // IP:PORT the client connected to
	Backend     string  `json:"backend"` // IP:PORT
	SNAT        string  `json:"snat"`    // IP:PORT toward the backend; "" in DNAT mode
	State       string  `json:"state"`   // IPVS's TCP state names: ESTABLISHED, FIN_WAIT, ...
	IdleSeconds float64 `json:"idle_seconds"`
}

// FlowFilter selects flows; an empty field matches everything.
type FlowFilter struct {
	Service string // exact name
	Backend string // exact "IP:PORT"
}

// FlowPage is one page of flows.
type FlowPage struct {
	Flows  []FlowInfo `json:"flows"`
	Total  int        `json:"total"`  // flows matching the filter
	Offset int        `json:"offset"` // of Flows[0] among them
	Next   int        `json:"next"`   // offset of the next page; -1 at the end
}

// Controller is what the daemon exposes to the API. Its methods are called
// concurrently, from the server's request goroutines and from metric
// scrapes, and must be safe for that. Errors wrap ErrNotFound, ErrInvalid or
// ErrExists where they apply; anything else is an internal error (HTTP 500).
// Their text is shown to the operator as is: one line naming the value.
//
// addr is the backend as the service knows it: port 0 for a backend that
// takes the client's port.
type Controller interface {
	Status() Status
	Services() []ServiceInfo
	AddBackend(service string, addr netip.AddrPort, weight int) error
	RemoveBackend(service string, addr netip.AddrPort) error
	SetWeight(service string, addr netip.AddrPort, weight int) error
	SetState(service string, addr netip.AddrPort, state string) error // StateReady, StateDrain or StateMaint
	Flows(f FlowFilter, offset, limit int) (FlowPage, error)
	Reload() error
}

// ParseBackend reads a backend address the way the config file writes it:
// "IP:PORT", or "IP" for port 0 (the port the client connected to).
func ParseBackend(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, errors.New("want IP:PORT or IP")
	}
	return netip.AddrPortFrom(a, 0), nil
}

// FormatBackend is ParseBackend's inverse: "IP" for port 0.
func FormatBackend(ap netip.AddrPort) string {
	if ap.Port() == 0 {
		return ap.Addr().String()
	}
	return ap.String()
}

// ValidState reports whether s is one of the administrative states.
func ValidState(s string) bool {
	return s == StateReady || s == StateDrain || s == StateMaint
}
