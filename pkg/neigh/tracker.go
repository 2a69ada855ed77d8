package neigh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Tracker keeps the next hops of a changing set of destinations fresh and reports every
// change. It never waits on a neighbour itself: it asks the kernel to resolve and reacts to
// the kernel's neighbour, link and route notifications, with timers as a safety net.
//
// Why it also sends resolution requests for entries that are already usable: the kernel
// re-verifies a neighbour only when its own traffic uses it, and l4raw's frames bypass the
// kernel. Without a "use" hint a backend's entry goes STALE and stays so, even after the
// backend died or changed its MAC; with one every refresh, a STALE entry is re-probed (DELAY,
// PROBE, then REACHABLE or FAILED within about 8 s with the default delay_first_probe_time 5 s
// and ucast_solicit 3 × retrans_time 1 s).
type Tracker struct {
	r        *Resolver
	log      *slog.Logger
	onChange func(dst netip.Addr, nh NextHop, err error)

	// Timings; NewTracker sets the defaults, tests in this package shorten them.
	refresh     time.Duration // re-resolve (with a use hint) every destination
	retry       time.Duration // re-request destinations without an answer
	settle      time.Duration // coalesce a burst of notifications into one pass
	kickGap     time.Duration // minimum time between two kicks of one destination
	resubscribe time.Duration // first back-off after a lost subscription (doubles to refresh)

	kicks   chan netip.Addr
	changed chan struct{} // SetTargets happened (capacity 1)

	mu   sync.Mutex
	want []netip.Addr

	running atomic.Bool
}

const (
	// DefaultRefresh is how often every destination is re-resolved: the kernel's
	// base_reachable_time default (30 s), after which a REACHABLE entry would go STALE.
	DefaultRefresh = 30 * time.Second
	// DefaultRetry is how often a destination without a next hop is retried. One second is the
	// kernel's own retrans_time between probes.
	DefaultRetry = time.Second
	// kickQueue is the depth of Kick's channel. Kicks beyond it are dropped: a full queue
	// means a pass is due anyway, and the packet path must never wait.
	kickQueue = 64
	// settleDelay coalesces a burst of notifications (a neighbour flush, a route table
	// reload) into one pass. A resolution answered in ~3 ms (measured on veth) is reported
	// within ~13 ms.
	settleDelay = 10 * time.Millisecond
	// kickGap limits the packet path to one re-resolution per destination per 100 ms however
	// many frames find no MAC: an unanswered request needs the kernel's 1 s retrans_time
	// anyway.
	kickGap = 100 * time.Millisecond
	// resubscribeDelay is the first wait before resubscribing after a lost subscription,
	// doubling up to DefaultRefresh: losses come from overload (ENOBUFS), so retry gently.
	resubscribeDelay = time.Second
)

// NewTracker returns a Tracker that calls onChange(dst, nh, nil) whenever dst gets a next hop
// or its next hop changes (other gateway, other MAC, our interface's MAC changed), and
// onChange(dst, NextHop{}, err) once when dst loses it (no route, interface down, neighbour
// FAILED). While a neighbour is being re-resolved the last answer stands. onChange runs on
// Run's goroutine and should return quickly; it may call SetTargets and Kick.
func (r *Resolver) NewTracker(onChange func(dst netip.Addr, nh NextHop, err error)) *Tracker {
	return &Tracker{
		r:           r,
		log:         r.log,
		onChange:    onChange,
		refresh:     DefaultRefresh,
		retry:       DefaultRetry,
		settle:      settleDelay,
		kickGap:     kickGap,
		resubscribe: resubscribeDelay,
		kicks:       make(chan netip.Addr, kickQueue),
		changed:     make(chan struct{}, 1),
	}
}

// SetTargets replaces the set of tracked destinations. It does not block; Run picks the set
// up. Removed destinations get no further calls.
func (t *Tracker) SetTargets(dsts []netip.Addr) {
	want := make([]netip.Addr, 0, len(dsts))
	for _, d := range dsts {
		want = append(want, canon(d))
	}
	t.mu.Lock()
	t.want = want
	t.mu.Unlock()
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

// Kick asks for an immediate re-resolution of dst, a tracked destination; the packet path
// calls it when it has no MAC for a backend. It never blocks; kicks of one destination closer
// together than 100 ms count once, and kicks for untracked destinations are ignored.
func (t *Tracker) Kick(dst netip.Addr) {
	select {
	case t.kicks <- dst:
	default:
	}
}

// tracked is Run's state for one destination.
type tracked struct {
	nh       NextHop
	have     bool // nh is the current answer and was reported
	failed   bool // the last report was a failure
	link     int  // egress interface of the last route found; 0 if none
	hop      netip.Addr
	lastKick time.Time
}

// Run tracks the destinations until ctx ends, then returns nil. It fails at once if it
// cannot subscribe to the kernel's notifications; a subscription lost later (for example
// to ENOBUFS when notifications outrun it) is re-established with back-off, followed by a full
// pass. Only one Run may be active per Tracker.
func (t *Tracker) Run(ctx context.Context) error {
	if !t.running.CompareAndSwap(false, true) {
		return errors.New("neigh: tracker already running")
	}
	defer t.running.Store(false)

	events, err := t.r.k.subscribe(ctx)
	if err != nil {
		return err
	}
	s := &runState{t: t, targets: map[netip.Addr]*tracked{}, dirty: map[netip.Addr]bool{}}
	s.applyTargets()

	refresh := time.NewTicker(t.refresh)
	defer refresh.Stop()
	retry := time.NewTicker(t.retry)
	defer retry.Stop()
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	settling := false
	resub := time.NewTimer(time.Hour)
	resub.Stop()
	backoff := t.resubscribe

	// A SetTargets that returned before a notification or kick arrives takes effect before
	// that notification or kick is handled: the select below picks among ready channels at
	// random.
	applyPending := func() {
		select {
		case <-t.changed:
			s.applyTargets()
		default:
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil

		case <-t.changed:
			s.applyTargets()

		case dst := <-t.kicks:
			applyPending()
			s.kick(canon(dst))

		case ev, ok := <-events:
			if !ok {
				events = nil
				if ctx.Err() != nil {
					return nil
				}
				t.log.Warn("neighbour notifications lost, resubscribing", "after", backoff)
				resub.Reset(backoff)
				continue
			}
			applyPending()
			s.note(ev)
			if !settling && (s.all || len(s.dirty) > 0) {
				settling = true
				settle.Reset(t.settle)
			}

		case <-settle.C:
			settling = false
			s.flush()

		case <-retry.C:
			s.pass(true, func(tg *tracked) bool { return !tg.have })

		case <-refresh.C:
			s.pass(true, func(*tracked) bool { return true })

		case <-resub.C:
			ev, err := t.r.k.subscribe(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				backoff = min(2*backoff, t.refresh)
				t.log.Debug("resubscribe failed", "err", err, "retry_after", backoff)
				resub.Reset(backoff)
				continue
			}
			events, backoff = ev, t.resubscribe
			t.log.Info("neighbour notifications restored")
			// Whatever changed meanwhile went unnoticed.
			s.pass(false, func(*tracked) bool { return true })
		}
	}
}

// runState is owned by Run's goroutine.
type runState struct {
	t       *Tracker
	targets map[netip.Addr]*tracked
	dirty   map[netip.Addr]bool
	all     bool // every destination is dirty
}

func (s *runState) applyTargets() {
	s.t.mu.Lock()
	want := slices.Clone(s.t.want)
	s.t.mu.Unlock()
	keep := make(map[netip.Addr]bool, len(want))
	var added []netip.Addr
	for _, d := range want {
		if keep[d] {
			continue
		}
		keep[d] = true
		if _, ok := s.targets[d]; !ok {
			s.targets[d] = &tracked{}
			added = append(added, d)
		}
	}
	for d := range s.targets {
		if !keep[d] {
			delete(s.targets, d)
			delete(s.dirty, d)
		}
	}
	p := newPass(s.t)
	for _, d := range added {
		p.evaluate(d, s.targets[d], true)
	}
}

func (s *runState) kick(dst netip.Addr) {
	tg, ok := s.targets[dst]
	if !ok {
		return
	}
	now := time.Now()
	if now.Sub(tg.lastKick) < s.t.kickGap {
		return
	}
	tg.lastKick = now
	newPass(s.t).evaluate(dst, tg, true)
}

// note marks the destinations an event may concern.
func (s *runState) note(ev event) {
	switch ev.kind {
	case eventRoute:
		s.all = true
	case eventLink:
		for d, tg := range s.targets {
			if tg.link == ev.ifindex || tg.link == 0 {
				s.dirty[d] = true
			}
		}
	case eventNeigh:
		ip := canon(ev.ip)
		for d, tg := range s.targets {
			if tg.link == ev.ifindex && tg.hop == ip {
				s.dirty[d] = true
			}
		}
	}
}

// flush re-evaluates what events marked, without use hints: the kernel has just told us
// what it knows.
func (s *runState) flush() {
	if s.all {
		s.all = false
		clear(s.dirty)
		s.pass(false, func(*tracked) bool { return true })
		return
	}
	p := newPass(s.t)
	for d := range s.dirty {
		if tg, ok := s.targets[d]; ok {
			p.evaluate(d, tg, false)
		}
	}
	clear(s.dirty)
}

func (s *runState) pass(use bool, which func(*tracked) bool) {
	p := newPass(s.t)
	for d, tg := range s.targets {
		if which(tg) {
			p.evaluate(d, tg, use)
		}
	}
}

// pass is one round of evaluations sharing neighbour-table reads and requests: destinations
// behind one gateway cost one dump and one request.
type pass struct {
	t         *Tracker
	tables    map[[2]int][]neighEntry // (ifindex, family) → entries
	requested map[hopKey]error
}

type hopKey struct {
	ifindex int
	ip      netip.Addr
}

func newPass(t *Tracker) *pass {
	return &pass{t: t, tables: map[[2]int][]neighEntry{}, requested: map[hopKey]error{}}
}

func (p *pass) neighbours(ifindex int, ip netip.Addr) ([]neighEntry, error) {
	key := [2]int{ifindex, family(ip)}
	if es, ok := p.tables[key]; ok {
		return es, nil
	}
	es, err := p.t.r.k.neighList(ifindex, family(ip))
	if err != nil {
		return nil, fmt.Errorf("list neighbours: %w", err)
	}
	p.tables[key] = es
	return es, nil
}

func (p *pass) request(ifindex int, ip netip.Addr) error {
	key := hopKey{ifindex, ip}
	if err, ok := p.requested[key]; ok {
		return err
	}
	err := p.t.r.k.requestResolve(ifindex, ip)
	if err != nil {
		err = fmt.Errorf("request resolution: %w", err)
	}
	p.requested[key] = err
	return err
}

// evaluate looks dst up once and reports what changed. use sends the resolution request even
// for a usable entry (see Tracker); an absent entry is always requested, since nothing else
// would bring it back.
func (p *pass) evaluate(dst netip.Addr, tg *tracked, use bool) {
	t := p.t
	rt, err := t.r.Route(dst)
	if err != nil {
		tg.link, tg.hop = 0, netip.Addr{}
		t.fail(dst, tg, err)
		return
	}
	tg.link, tg.hop = rt.Link.Index, rt.Hop()
	if rt.Local {
		t.succeed(dst, tg, NextHop{Route: rt})
		return
	}
	if err := sendable(rt); err != nil {
		t.fail(dst, tg, err)
		return
	}
	hop := rt.Hop()
	es, err := p.neighbours(rt.Link.Index, hop)
	if err != nil {
		t.fail(dst, tg, resolveErr(rt, err))
		return
	}
	e, ok := findNeigh(es, hop)
	if !ok || use {
		if err := p.request(rt.Link.Index, hop); err != nil {
			t.fail(dst, tg, resolveErr(rt, err))
			return
		}
	}
	switch {
	case ok && e.usable():
		t.succeed(dst, tg, NextHop{Route: rt, DstMAC: e.mac})
	case ok && e.state&unix.NUD_FAILED != 0:
		t.fail(dst, tg, resolveErr(rt, fmt.Errorf("%w (state FAILED: no answer to the kernel's probes)", ErrUnresolved)))
	default:
		// Absent (just requested), INCOMPLETE or NONE: the kernel's notification of the
		// outcome brings us back.
	}
}

func (t *Tracker) succeed(dst netip.Addr, tg *tracked, nh NextHop) {
	if tg.have && tg.nh == nh {
		return
	}
	if tg.have {
		t.log.Info("next hop changed", "dst", dst, "link", nh.Link.Name, "hop", hopString(nh), "mac", macString(nh.DstMAC))
	} else {
		t.log.Info("next hop resolved", "dst", dst, "link", nh.Link.Name, "hop", hopString(nh), "mac", macString(nh.DstMAC))
	}
	tg.nh, tg.have, tg.failed = nh, true, false
	if t.onChange != nil {
		t.onChange(dst, nh, nil)
	}
}

func (t *Tracker) fail(dst netip.Addr, tg *tracked, err error) {
	if tg.failed {
		return
	}
	t.log.Warn("next hop lost", "dst", dst, "err", err)
	tg.nh, tg.have, tg.failed = NextHop{}, false, true
	if t.onChange != nil {
		t.onChange(dst, NextHop{}, err)
	}
}

func hopString(nh NextHop) string {
	if nh.Local {
		return "local"
	}
	return nh.Hop().String()
}

func macString(m [6]byte) string {
	return net.HardwareAddr(m[:]).String()
}
