package forward

import (
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/l4raw/l4raw/pkg/conntrack"
	"github.com/l4raw/l4raw/pkg/nat"
	"github.com/l4raw/l4raw/pkg/sched"
)

// Mode is a service's forwarding mode.
type Mode uint8

// Modes.
const (
	// FullNAT rewrites source and destination: the backend sees the
	// balancer's SNAT address, so replies come back on any network layout.
	FullNAT Mode = iota
	// DNAT rewrites only the destination: the backend sees the client's
	// address and must route its replies through the balancer.
	DNAT
)

func (m Mode) String() string {
	if m == DNAT {
		return "dnat"
	}
	return "fullnat"
}

// Hop is where frames toward a backend go: the egress interface, our MAC on
// it and the next hop's MAC.
type Hop struct {
	Ifindex  int
	Src, Dst [6]byte
}

// Iface is an interface the balancer receives and sends on.
type Iface struct {
	Index int
	Name  string
	MAC   [6]byte
}

// MemberState is the administrative state of a backend in a service.
type MemberState uint8

// Member states, after HAProxy's server states.
const (
	// Ready takes new connections (when healthy and its weight is above 0).
	Ready MemberState = iota
	// Drain takes no new connections; existing ones continue to their end
	// (IPVS: weight 0, "quiescent").
	Drain
	// Maint is out of service: no new connections; existing ones continue
	// or, with the service's ResetOnMaint, are answered with RSTs.
	Maint
)

var memberStateNames = [...]string{"ready", "drain", "maint"}

func (s MemberState) String() string {
	if int(s) < len(memberStateNames) {
		return memberStateNames[s]
	}
	return "invalid"
}

// ParseMemberState parses "ready", "drain" or "maint".
func ParseMemberState(s string) (MemberState, error) {
	for i, n := range memberStateNames {
		if n == s {
			return MemberState(i), nil
		}
	}
	return 0, fmt.Errorf("forward: state %q: want ready, drain or maint", s)
}

// BackendSpec describes one backend of a service.
type BackendSpec struct {
	Addr   netip.AddrPort // port 0: the service port the connection came to
	Weight int
	State  MemberState
}

// ServiceSpec describes one service (a VIP with one or more ports).
type ServiceSpec struct {
	Name      string
	VIP       netip.Addr
	Ports     []uint16
	Mode      Mode
	Scheduler string
	Backends  []BackendSpec
	// ResetOnMaint: when a backend goes to maint, its connections are
	// answered with RSTs (both sides) instead of being left to finish.
	ResetOnMaint bool
}

// Setup is everything the engine forwards.
type Setup struct {
	Services []ServiceSpec
	SNAT     []netip.Addr // full-NAT source addresses
	NATPorts nat.PortRange
	Ifaces   []Iface // receive and send interfaces; index = interface slot
	// LocalSNAT maps the address of a backend on this host (its frames go
	// through lo) to the SNAT address its connections use instead of SNAT:
	// an address the host's own stack routes back through lo.
	LocalSNAT map[netip.Addr]netip.Addr
}

// Config configures an Engine.
type Config struct {
	MaxConns int
	Timeouts conntrack.Timeouts
	Workers  int
	Log      *slog.Logger
	// Kick, if set, is called (from the frame path: it must not block) when
	// a backend's next hop is unknown or unusable, to ask the control plane
	// to resolve it.
	Kick func(backend netip.Addr)
	// RSTTTL is the IP TTL of the RSTs the balancer itself sends.
	RSTTTL uint8
	// TSClock, for tests, replaces the timestamp clock (wall-clock ms).
	TSClock func() uint32
}

// Backend is one backend endpoint (address and port). It is shared by every
// service that lists the same endpoint and lives as long as the engine, so
// its counters, NAT ports and identity survive reloads.
type Backend struct {
	ID   uint32
	Addr netip.AddrPort

	addr4 [4]byte
	hop   atomic.Pointer[Hop]
	up    atomic.Bool
	// pools[i] allocates NAT ports on SNAT address snat[i] for this
	// backend: the engine's SNAT addresses, or for a backend on this host
	// (reached through lo) its own local address, so replies come back
	// through lo.
	pools []*nat.Pool
	snat  []conntrack.Addr
	// stats has one padded slot per worker, so workers never share a line.
	stats       []BackendStats
	active      atomic.Int64
	established atomic.Int64

	// Outcomes of new connections, for passive health: a SYN-ACK came back;
	// the backend answered the SYN with a RST; the client had to send its
	// SYN again (no answer within its retransmission timeout).
	synAnswered, synRefused, synRetried atomic.Uint64
}

// SynOutcomes returns the counts of new connections the backend answered,
// refused with a RST, and left unanswered long enough for the client to
// retransmit its SYN, since the start.
func (b *Backend) SynOutcomes() (answered, refused, retried uint64) {
	return b.synAnswered.Load(), b.synRefused.Load(), b.synRetried.Load()
}

// Up reports the backend's health.
func (b *Backend) Up() bool { return b.up.Load() }

// Active returns the number of connections in the table for this backend.
func (b *Backend) Active() int64 { return b.active.Load() }

// Established returns how many of them are ESTABLISHED (IPVS's ActiveConn;
// the others are in their handshake or closing: InActConn).
func (b *Backend) Established() int64 { return b.established.Load() }

// Stats returns the backend's counters summed over workers.
func (b *Backend) Stats() BackendCounters {
	var c BackendCounters
	for i := range b.stats {
		c.add(&b.stats[i])
	}
	return c
}

// NATPortsInUse returns the number of NAT ports held for this backend.
func (b *Backend) NATPortsInUse() int {
	n := 0
	for _, p := range b.pools {
		n += p.InUse()
	}
	return n
}

type member struct {
	b      *Backend
	weight int
	state  MemberState
}

// Member is one backend of a service as the service uses it.
type Member struct {
	Backend *Backend
	Weight  int
	State   MemberState
}

// Service is one VIP:port the engine balances.
type Service struct {
	ID      uint16
	Name    string
	VIP     netip.Addr
	Port    uint16
	Mode    Mode
	members []member
	sched   atomic.Pointer[schedBox]
	schedNm string
	reset   bool
}

// Members returns the service's backends with their weights and states.
func (s *Service) Members() []Member {
	out := make([]Member, len(s.members))
	for i, m := range s.members {
		out[i] = Member{Backend: m.b, Weight: m.weight, State: m.state}
	}
	return out
}

// Scheduler returns the service's scheduler name.
func (s *Service) Scheduler() string { return s.schedNm }

type schedBox struct{ s sched.Scheduler }

// Backends returns the service's backends.
func (s *Service) Backends() []*Backend {
	out := make([]*Backend, len(s.members))
	for i, m := range s.members {
		out[i] = m.b
	}
	return out
}

// state is what the frame path reads; it is replaced, never changed.
type state struct {
	services map[uint64]*Service // key: svcKey(vip, port)
	byID     []*Service          // in Setup order
	byNum    map[uint16]*Service // by Service.ID
	snat     [][4]byte
	snatAddr []conntrack.Addr
	ifaces   []Iface
}

func svcKey(a [4]byte, port uint16) uint64 {
	return uint64(a[0])<<40 | uint64(a[1])<<32 | uint64(a[2])<<24 | uint64(a[3])<<16 | uint64(port)
}

// Engine is the forwarding logic shared by all workers.
type Engine struct {
	cfg   Config
	log   *slog.Logger
	table *conntrack.Table
	seed  maphash.Seed
	st    atomic.Pointer[state]

	mu       sync.Mutex                 // serialises control-plane changes
	backends atomic.Pointer[[]*Backend] // by ID, append-only
	byAddr   map[netip.AddrPort]*Backend
	svcIDs   map[uint64]uint16 // stable service IDs: a VIP:port keeps its ID across Apply
	natRange nat.PortRange
	nsnat    int

	workers []*Worker
	tap     atomic.Pointer[tapBox]
}

// Tap receives frames as they arrive and leave (Ethernet first, without
// the virtio-net header). A frame and what it was rewritten into are
// offered together, and taken when either matches, so a filter on
// addresses follows a connection across its rewrite. Neither method may
// block or keep frame.
type Tap interface {
	Match(frame []byte) bool
	Capture(rx bool, ifindex int, frame []byte)
}

type tapBox struct{ t Tap }

// SetTap starts (or with nil stops) copying every frame to t.
func (e *Engine) SetTap(t Tap) {
	if t == nil {
		e.tap.Store(nil)
		return
	}
	e.tap.Store(&tapBox{t})
}

// New returns an engine with an empty setup.
func New(cfg Config) *Engine {
	if cfg.Workers < 1 {
		cfg.Workers = 1
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.RSTTTL == 0 {
		cfg.RSTTTL = 64
	}
	e := &Engine{cfg: cfg, log: cfg.Log, seed: maphash.MakeSeed(), byAddr: map[netip.AddrPort]*Backend{}, svcIDs: map[uint64]uint16{}}
	e.table = conntrack.New(conntrack.Config{MaxConns: cfg.MaxConns, Timeouts: cfg.Timeouts, OnRemove: e.onRemove})
	e.st.Store(&state{services: map[uint64]*Service{}, byNum: map[uint16]*Service{}})
	empty := []*Backend{}
	e.backends.Store(&empty)
	for i := 0; i < cfg.Workers; i++ {
		e.workers = append(e.workers, &Worker{e: e, id: i})
	}
	return e
}

// Table returns the connection table.
func (e *Engine) Table() *conntrack.Table { return e.table }

// Worker returns worker i's frame handler. Each worker must be used by one
// goroutine at a time.
func (e *Engine) Worker(i int) *Worker { return e.workers[i] }

// Workers returns the number of workers.
func (e *Engine) Workers() int { return len(e.workers) }

// Backends returns every backend the engine has known, by ID.
func (e *Engine) Backends() []*Backend { return *e.backends.Load() }

// Services returns the current services (one per VIP and port).
func (e *Engine) Services() []*Service { return e.st.Load().byID }

// ServiceByID returns the current service with identifier id, or nil.
func (e *Engine) ServiceByID(id uint16) *Service { return e.st.Load().byNum[id] }

// Apply replaces the setup. Backends already known keep their identity,
// counters, NAT ports and health, and a VIP:port keeps its service ID;
// connections in the table keep their backend. The number of SNAT
// addresses cannot change while connections use them, and a new NAT range
// applies to new backends only. A backend that goes to maint in a service
// with ResetOnMaint has its connections marked for reset. On error nothing
// changes.
func (e *Engine) Apply(s Setup) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.byAddr) == 0 {
		e.natRange, e.nsnat = s.NATPorts, len(s.SNAT)
	} else if len(s.SNAT) != e.nsnat {
		return fmt.Errorf("forward: the number of SNAT addresses cannot change at run time (%d now, %d asked)", e.nsnat, len(s.SNAT))
	}
	if len(s.Ifaces) > 255 {
		return errors.New("forward: more than 255 interfaces")
	}
	ns := &state{services: map[uint64]*Service{}, byNum: map[uint16]*Service{}, ifaces: append([]Iface(nil), s.Ifaces...)}
	for _, a := range s.SNAT {
		if !a.Is4() {
			return fmt.Errorf("forward: SNAT address %s: only IPv4 is supported", a)
		}
		ns.snat = append(ns.snat, a.As4())
		ns.snatAddr = append(ns.snatAddr, conntrack.AddrFrom4(a.As4()))
	}
	old := e.st.Load()
	backends := append([]*Backend(nil), e.Backends()...)
	added := map[netip.AddrPort]*Backend{}
	newIDs := map[uint64]uint16{}
	nextID := len(e.svcIDs)
	type resetReq struct {
		svc uint16
		be  uint32
	}
	var resets []resetReq
	for _, sp := range s.Services {
		if !sp.VIP.Is4() {
			return fmt.Errorf("forward: service %s: VIP %s: only IPv4 is supported", sp.Name, sp.VIP)
		}
		if sp.Mode == FullNAT && len(ns.snat) == 0 {
			return fmt.Errorf("forward: service %s: full NAT needs an SNAT address", sp.Name)
		}
		for _, port := range sp.Ports {
			k := svcKey(sp.VIP.As4(), port)
			if _, dup := ns.services[k]; dup {
				return fmt.Errorf("forward: %s:%d is listed twice", sp.VIP, port)
			}
			id, ok := e.svcIDs[k]
			if !ok {
				if id, ok = newIDs[k]; !ok {
					if nextID >= 1<<16 {
						return errors.New("forward: more than 65536 service ports")
					}
					id = uint16(nextID)
					nextID++
					newIDs[k] = id
				}
			}
			svc := &Service{ID: id, Name: sp.Name, VIP: sp.VIP, Port: port, Mode: sp.Mode, schedNm: sp.Scheduler, reset: sp.ResetOnMaint}
			prevSvc := old.services[k]
			for _, bs := range sp.Backends {
				ap := bs.Addr
				if ap.Port() == 0 {
					ap = netip.AddrPortFrom(ap.Addr(), port)
				}
				if !ap.Addr().Is4() {
					return fmt.Errorf("forward: backend %s: only IPv4 is supported", ap)
				}
				b := e.byAddr[ap]
				if b == nil {
					b = added[ap]
				}
				if b == nil {
					b = &Backend{ID: uint32(len(backends)), Addr: ap, addr4: ap.Addr().As4(), stats: make([]BackendStats, len(e.workers))}
					b.snat = ns.snatAddr
					if l, ok := s.LocalSNAT[ap.Addr()]; ok && l.Is4() {
						b.snat = []conntrack.Addr{conntrack.AddrFrom4(l.As4())}
					}
					for range b.snat {
						b.pools = append(b.pools, nat.NewPool(e.natRange, nat.Quarantine))
					}
					// Another port of a known address: same next hop, which
					// SetHop will not report again until it changes.
					for _, o := range backends {
						if o.Addr.Addr() == ap.Addr() {
							b.hop.Store(o.hop.Load())
							break
						}
					}
					added[ap] = b
					backends = append(backends, b)
				}
				for _, m := range svc.members {
					if m.b == b {
						return fmt.Errorf("forward: service %s: backend %s is listed twice", sp.Name, ap)
					}
				}
				svc.members = append(svc.members, member{b: b, weight: bs.Weight, state: bs.State})
				if bs.State == Maint && sp.ResetOnMaint && memberState(prevSvc, b) != Maint {
					resets = append(resets, resetReq{id, b.ID})
				}
			}
			var prev sched.Scheduler
			if prevSvc != nil {
				if box := prevSvc.sched.Load(); box != nil {
					prev = box.s
				}
			}
			if err := e.buildSched(svc, prev); err != nil {
				return err
			}
			ns.services[k] = svc
			ns.byID = append(ns.byID, svc)
			ns.byNum[id] = svc
		}
	}
	for ap, b := range added {
		e.byAddr[ap] = b
	}
	for k, id := range newIDs {
		e.svcIDs[k] = id
	}
	e.backends.Store(&backends)
	e.st.Store(ns)
	for _, r := range resets {
		n := e.table.MarkReset(func(f *conntrack.Flow) bool { return f.Service == r.svc && f.Backend == r.be })
		e.log.Info("backend in maint: resetting its connections", "backend", backends[r.be].Addr, "connections", n)
	}
	return nil
}

// memberState is b's state in svc, or Ready if it is not a member.
func memberState(svc *Service, b *Backend) MemberState {
	if svc != nil {
		for _, m := range svc.members {
			if m.b == b {
				return m.state
			}
		}
	}
	return Ready
}

// buildSched publishes a scheduler over the service's healthy members.
func (e *Engine) buildSched(svc *Service, prev sched.Scheduler) error {
	var cands []sched.Candidate
	for _, m := range svc.members {
		if m.b.up.Load() && m.state == Ready {
			cands = append(cands, sched.Candidate{ID: m.b.ID, Weight: m.weight, Name: m.b.Addr.String(), Active: &m.b.active})
		}
	}
	s, err := sched.New(svc.schedNm, cands, prev)
	if err != nil {
		return fmt.Errorf("forward: service %s: %w", svc.Name, err)
	}
	svc.sched.Store(&schedBox{s})
	return nil
}

// SetHealth marks a backend up or down and rebuilds the schedulers of the
// services that use it. Existing connections are not touched.
func (e *Engine) SetHealth(addr netip.AddrPort, up bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	b := e.byAddr[addr]
	if b == nil || b.up.Swap(up) == up {
		return
	}
	for _, svc := range e.st.Load().byID {
		for _, m := range svc.members {
			if m.b == b {
				var prev sched.Scheduler
				if box := svc.sched.Load(); box != nil {
					prev = box.s
				}
				_ = e.buildSched(svc, prev) // the name was valid when the service was built
				break
			}
		}
	}
}

// SetHop sets (or, with nil, clears) the next hop toward every backend
// endpoint on address a.
func (e *Engine) SetHop(a netip.Addr, h *Hop) {
	for _, b := range e.Backends() {
		if b.Addr.Addr() == a {
			b.hop.Store(h)
		}
	}
}

// tsClock is the clock new connections' TCP timestamps are moved onto:
// wall-clock milliseconds, so it also keeps rising across a restart.
func (e *Engine) tsClock() uint32 {
	if e.cfg.TSClock != nil {
		return e.cfg.TSClock()
	}
	return uint32(time.Now().UnixMilli())
}

// Now returns the engine's clock (see conntrack.Table.Now).
func (e *Engine) Now() uint32 { return e.table.Now() }

// Expire runs the connection table's sweep; call it every 100 ms or so.
func (e *Engine) Expire(budget int) int { return e.table.Expire(e.table.Now(), budget) }

// RunExpiry sweeps the table every interval until stop is closed.
func (e *Engine) RunExpiry(stop <-chan struct{}, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			// 100k entries per 100 ms is 1M expiries a second, far above
			// any connection rate the data path sustains.
			e.Expire(100_000)
		}
	}
}

// onRemove releases what a connection held: its NAT port and its count.
func (e *Engine) onRemove(f conntrack.Flow) {
	bs := *e.backends.Load()
	if int(f.Backend) >= len(bs) {
		return
	}
	b := bs[f.Backend]
	b.active.Add(-1)
	if f.State == conntrack.Established {
		b.established.Add(-1)
	}
	for i, a := range b.snat {
		if a == f.Reply.Dst {
			// With rewritten timestamps the backend's TIME_WAIT accepts the
			// next SYN on the port; without them it may not.
			b.pools[i].Put(f.Reply.DstPort, f.Orig.Src, f.Seen, f.BackendClosedFirst && !f.Timestamps)
			return
		}
	}
}
