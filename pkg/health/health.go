// Package health runs active checks against backends and reports when one
// goes up or down.
//
// Each target has its own loop: one probe per interval, started at a random
// phase so that checks of many backends spread over the interval instead of
// arriving together (as HAProxy does). A target goes down after Fall
// consecutive failures and up after Rise consecutive successes; its first
// result sets its initial state directly. Results that come from elsewhere
// (passive checks of live traffic) enter through Checker.Report and count
// the same way.
//
// Three probers cover the usual checks: TCPProber (the handshake completes),
// HTTPProber (a GET answers with the expected status) and SendExpectProber
// (a string sent, or nothing, draws a reply with the expected prefix: echo
// and banner checks). Each Target may carry its own.
//
// # Where probes come from
//
// A probe is an ordinary connection of the host's own TCP stack, not a
// packet of the data path: the kernel picks its source address (the
// preferred source of the route toward the backend, usually the host's
// address on that interface) and its source port, from
// net.ipv4.ip_local_port_range (32768-60999 by default). The balancer's NAT
// ports are kept outside that range (or reserved from it), so the guard
// that hides NAT ports from the kernel never drops a probe's replies, and a
// probe never collides with a NAT tuple. Backends that allow only the
// balancer must therefore allow that address, and a firewall between them
// must pass the ephemeral port range. TCPProber.Dialer (and the Dialer of
// the other probers) can pin the source address if needed.
//
// # Closing without RST
//
// Every prober ends its connection with a FIN, never a RST: the balancer
// host must send no RSTs of its own. It half-closes, reads and discards
// whatever the backend sent until the backend closes too or the probe's
// deadline passes, and only then closes (closing with unread data makes the
// kernel send a RST, RFC 2525 §2.17, see tcp_close in net/ipv4/tcp.c). Data
// a backend sends after the probe's deadline still draws a RST from the
// orphaned socket (tcp_rcv_state_process in net/ipv4/tcp_input.c): only a
// backend that keeps talking past the timeout sees one.
package health

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config sets the rhythm of one target's checks. Zero or negative fields take
// HAProxy's `check` defaults (inter 2s, rise 2, fall 3) with a 1 s timeout.
type Config struct {
	Interval time.Duration // start-to-start time between two probes
	Timeout  time.Duration // limit of one probe
	Rise     int           // consecutive successes that bring a down target up
	Fall     int           // consecutive failures that take an up target down
}

// Defaults, after HAProxy's `check inter 2s rise 2 fall 3`; the timeout is
// half the interval, so a probe always ends before the next is due.
const (
	DefaultInterval = 2 * time.Second
	DefaultTimeout  = time.Second
	DefaultRise     = 2
	DefaultFall     = 3
)

func (c Config) withDefaults() Config {
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Rise < 1 {
		c.Rise = DefaultRise
	}
	if c.Fall < 1 {
		c.Fall = DefaultFall
	}
	return c
}

// Target is one address to check. ID is the caller's handle (a backend
// index, say) and is unique within a Checker.
type Target struct {
	ID     int
	Addr   netip.AddrPort
	Config Config
	// Prober checks this target; nil uses the Checker's default prober, so
	// one Checker serves services with different kinds of check. SetTargets
	// compares probers with ==: the value types HTTPProber and
	// SendExpectProber compare by content, a *TCPProber by identity, and a
	// prober that is not comparable (a func type, say) counts as changed at
	// every SetTargets.
	Prober Prober
}

// sameTarget reports whether a and b are the same check. It does not use
// == on Target: that panics for a prober that is not comparable.
func sameTarget(a, b Target) bool {
	return a.ID == b.ID && a.Addr == b.Addr && a.Config == b.Config && sameProber(a.Prober, b.Prober)
}

func sameProber(a, b Prober) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	// Value.Comparable looks at the dynamic value, fields included, so the
	// == below cannot panic.
	return reflect.ValueOf(a).Comparable() && reflect.ValueOf(b).Comparable() && a == b
}

// Event reports a state change of a target.
type Event struct {
	ID     int
	Addr   netip.AddrPort
	Up     bool
	Reason string // "connect: connection refused", "timeout after 1s", "2 successes", "initial check succeeded", or Report's reason
	At     time.Time
}

// Prober performs one check. It returns nil when addr is healthy. It must
// return once ctx is done.
type Prober interface {
	Probe(ctx context.Context, addr netip.AddrPort) error
}

// Checker checks a changing set of targets.
//
// onChange is called once per state change, one call at a time, from the
// Checker's goroutines (or from Report's caller). It may call Up, but not
// SetTargets (SetTargets waits for in-flight probes and their events to
// finish) nor Report (a report that changes a state waits for onChange).
type Checker struct {
	log      *slog.Logger
	prober   Prober
	onChange func(Event)

	emitMu sync.Mutex // serialises log lines and onChange calls
	setMu  sync.Mutex // serialises SetTargets

	mu      sync.Mutex
	targets map[int]*target
	runCtx  context.Context // non-nil while Run is active
	loops   sync.WaitGroup  // loops started by Run
}

// target is the Checker's record of one Target. Fields below probeMu are
// guarded by Checker.mu.
type target struct {
	Target
	// ctx ends when the target is removed or replaced; it cancels the
	// target's loop and any probe in flight.
	ctx    context.Context
	cancel context.CancelFunc
	// probeMu is held for a whole check, probe to event, so that a target
	// has one probe in flight and SetTargets can wait for it.
	probeMu sync.Mutex
	// resultMu is held from recording a result (probe or Report) to the end
	// of its event, so that a target's events reach onChange in the order
	// of its state changes. Lock order: probeMu, resultMu, then mu or
	// Checker.emitMu.
	resultMu sync.Mutex

	st       state
	loopDone chan struct{} // closed when the loop exits; nil if none started
}

// New returns a Checker with no targets. p probes the targets that carry
// no Prober of their own; nil means a plain TCPProber. A nil log discards; a
// nil onChange is allowed.
func New(log *slog.Logger, p Prober, onChange func(Event)) *Checker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if p == nil {
		p = &TCPProber{}
	}
	if onChange == nil {
		onChange = func(Event) {}
	}
	return &Checker{log: log, prober: p, onChange: onChange, targets: make(map[int]*target)}
}

// SetTargets replaces the set of targets. A new ID, or a known ID with a new
// address, starts with an unknown state and gets an initial probe at once
// while Run is active (otherwise at the next Initial or Run). A known ID
// with only a new Config or Prober keeps its state and restarts its loop. A removed
// target's loop has stopped, and its last event has been delivered, when
// SetTargets returns. Of duplicate IDs the last one wins.
func (c *Checker) SetTargets(ts []Target) {
	c.setMu.Lock()
	defer c.setMu.Unlock()
	want := make(map[int]Target, len(ts))
	for _, t := range ts {
		t.Config = t.Config.withDefaults()
		want[t.ID] = t
	}

	// Stop what goes away or changes. Stopped targets stay in the map until
	// their last check has finished, so Up keeps answering for them.
	type stoppedTarget struct {
		tg   *target
		done chan struct{}
	}
	var stopped []stoppedTarget
	c.mu.Lock()
	for id, old := range c.targets {
		if t, keep := want[id]; keep && sameTarget(t, old.Target) {
			continue
		}
		old.cancel()
		stopped = append(stopped, stoppedTarget{old, old.loopDone})
	}
	c.mu.Unlock()
	for _, st := range stopped {
		st.tg.probeMu.Lock() // wait for a check in flight, event included
		st.tg.probeMu.Unlock()
		st.tg.resultMu.Lock() // and for a Report's event
		st.tg.resultMu.Unlock()
		if st.done != nil {
			<-st.done
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range stopped {
		old := st.tg
		delete(c.targets, old.ID)
		if t, keep := want[old.ID]; keep && t.Addr == old.Addr {
			// Same backend, new rhythm or prober: keep what we know of it,
			// but not a streak measured against the old thresholds.
			c.add(t, state{known: old.st.known, up: old.st.up})
		}
	}
	for id, t := range want {
		if _, ok := c.targets[id]; !ok {
			c.add(t, state{})
		}
	}
}

// add registers t and starts its loop if Run is active. c.mu is held.
func (c *Checker) add(t Target, st state) {
	tg := &target{Target: t, st: st}
	tg.ctx, tg.cancel = context.WithCancel(context.Background())
	c.targets[t.ID] = tg
	if c.runCtx != nil {
		c.startLoop(tg)
	}
}

// Up reports whether target id is up. Unknown IDs and targets not yet
// probed are not up.
func (c *Checker) Up(id int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	tg, ok := c.targets[id]
	return ok && tg.st.known && tg.st.up
}

// Initial probes every target once, all at the same time, and sets each
// target's state to its result, reporting every target whose state that
// sets or changes. It returns when all probes are done: after the longest
// target timeout at most, or when ctx ends (targets not probed by then keep
// their state).
func (c *Checker) Initial(ctx context.Context) {
	c.mu.Lock()
	tgs := make([]*target, 0, len(c.targets))
	for _, tg := range c.targets {
		tgs = append(tgs, tg)
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, tg := range tgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.check(ctx, tg, checkInitial)
		}()
	}
	wg.Wait()
}

// Run checks every target on its own schedule until ctx ends, then stops all
// loops and returns. Targets added meanwhile join at once. A second Run while
// one is active returns immediately.
func (c *Checker) Run(ctx context.Context) {
	c.mu.Lock()
	if c.runCtx != nil {
		c.mu.Unlock()
		c.log.Warn("health checker already running")
		return
	}
	c.runCtx = ctx
	for _, tg := range c.targets {
		c.startLoop(tg)
	}
	c.mu.Unlock()

	<-ctx.Done()

	c.mu.Lock()
	c.runCtx = nil
	c.mu.Unlock()
	c.loops.Wait()
}

// startLoop runs tg's loop under the active Run. c.mu is held.
func (c *Checker) startLoop(tg *target) {
	done, run := make(chan struct{}), c.runCtx
	tg.loopDone = done
	c.loops.Add(1)
	go func() {
		defer c.loops.Done()
		defer close(done)
		c.loop(run, tg)
	}()
}

func (c *Checker) loop(run context.Context, tg *target) {
	c.check(run, tg, checkFirst)
	// A random phase spreads the checks of many targets over the interval.
	phase := time.NewTimer(rand.N(tg.Config.Interval))
	defer phase.Stop()
	select {
	case <-run.Done():
		return
	case <-tg.ctx.Done():
		return
	case <-phase.C:
	}
	tick := time.NewTicker(tg.Config.Interval)
	defer tick.Stop()
	for {
		c.check(run, tg, checkRegular)
		select {
		case <-run.Done():
			return
		case <-tg.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

type checkKind uint8

const (
	checkRegular checkKind = iota // counts towards rise and fall
	checkInitial                  // sets the state from this one result
	checkFirst                    // checkInitial, only if the state is still unknown
)

// check probes tg once and records the result. A probe cut short by ctx or
// by the target's removal is no result at all.
func (c *Checker) check(ctx context.Context, tg *target, kind checkKind) {
	tg.probeMu.Lock()
	defer tg.probeMu.Unlock()
	if tg.ctx.Err() != nil || ctx.Err() != nil {
		return
	}
	if kind == checkFirst {
		c.mu.Lock()
		known := tg.st.known
		c.mu.Unlock()
		if known {
			return
		}
	}
	p := tg.Prober
	if p == nil {
		p = c.prober
	}
	pctx, cancel := context.WithTimeout(ctx, tg.Config.Timeout)
	deadline, _ := pctx.Deadline()
	stop := context.AfterFunc(tg.ctx, cancel)
	err := p.Probe(pctx, tg.Addr)
	// A refusal that merely arrives late is still a refusal: only an error
	// that is itself a timeout reads "timeout after". The clock, not
	// pctx.Err, says whether the deadline passed: a socket deadline set to
	// it can fire a moment before the context's own timer does.
	timedOut := errors.Is(err, context.DeadlineExceeded) ||
		(isTimeout(err) && !time.Now().Before(deadline))
	stop()
	cancel()
	if tg.ctx.Err() != nil || ctx.Err() != nil {
		return
	}

	reason := ""
	if err != nil {
		reason = err.Error()
		if timedOut {
			reason = "timeout after " + tg.Config.Timeout.String()
		}
	}
	tg.resultMu.Lock()
	defer tg.resultMu.Unlock()
	c.record(tg, err == nil, kind != checkRegular, reason)
}

// Report records a result for target id that did not come from its prober:
// a passive check that saw the backend fail live connections (ok false) or
// serve them (ok true), an operator, another monitor. It counts exactly like
// a regular probe result: Fall consecutive failures, probes and reports
// together, take an up target down, with reason as the event's Reason and
// the same log line and onChange call as a failed probe; successes count
// towards Rise and end a failure streak. So a caller that reports every
// success cancels the probes' failures: report successes only when that is
// meant.
//
// Report does nothing for an unknown or removed ID, nor for a target not yet
// probed (the first probe sets a target's initial state, so a stray report
// cannot bring up a backend no check has seen). It does not wait for a probe
// in flight. When it changes a state it delivers the event before
// it returns, so it must not be called from onChange. It takes two short
// locks: call it per decision (a connection failed), not per packet.
func (c *Checker) Report(id int, ok bool, reason string) {
	c.mu.Lock()
	tg, found := c.targets[id]
	c.mu.Unlock()
	if !found {
		return
	}
	tg.resultMu.Lock()
	defer tg.resultMu.Unlock()
	if tg.ctx.Err() != nil {
		return // removed or replaced: its last event is delivered
	}
	c.mu.Lock()
	known := tg.st.known
	c.mu.Unlock()
	if !known {
		return
	}
	if !ok && reason == "" {
		reason = "reported failure"
	}
	c.record(tg, ok, false, oneLine(reason))
}

// record advances tg's state by one result and reports a change.
// tg.resultMu is held.
func (c *Checker) record(tg *target, ok, initial bool, reason string) {
	c.mu.Lock()
	changed, streak := tg.st.observe(ok, initial, tg.Config.Rise, tg.Config.Fall)
	up := tg.st.up
	c.mu.Unlock()
	if !changed {
		return
	}
	switch {
	case initial && up:
		reason = "initial check succeeded"
	case up:
		reason = plural(streak, "success", "successes")
	}
	c.emit(Event{ID: tg.ID, Addr: tg.Addr, Up: up, Reason: reason, At: time.Now()}, streak)
}

// maxReason bounds a reported reason, which goes into a log line and an
// Event: 200 bytes hold any sentence a caller means to log.
const maxReason = 200

// oneLine keeps a reason on one line and short.
func oneLine(s string) string {
	if len(s) > maxReason {
		s = strings.ToValidUTF8(s[:maxReason], "") + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func (c *Checker) emit(ev Event, streak int) {
	c.emitMu.Lock()
	defer c.emitMu.Unlock()
	if ev.Up {
		c.log.Info("backend up", "id", ev.ID, "addr", ev.Addr, "reason", ev.Reason)
	} else {
		c.log.Warn("backend down", "id", ev.ID, "addr", ev.Addr, "reason", ev.Reason, "failures", streak)
	}
	c.onChange(ev)
}

// state is a target's health, advanced one result at a time.
type state struct {
	known, up  bool
	succ, fail int // current streaks; one of them is 0
}

// observe records one result. initial sets the state from this result
// alone. It reports whether the state changed (or became known) and the
// length of the streak that changed it.
func (s *state) observe(ok, initial bool, rise, fall int) (changed bool, streak int) {
	if ok {
		s.succ, s.fail = s.succ+1, 0
	} else {
		s.succ, s.fail = 0, s.fail+1
	}
	streak = max(s.succ, s.fail)
	switch {
	case initial || !s.known:
		changed = !s.known || s.up != ok
		s.known, s.up = true, ok
	case ok && !s.up && s.succ >= rise:
		changed, s.up = true, true
	case !ok && s.up && s.fail >= fall:
		changed, s.up = true, false
	}
	if changed {
		// A new state starts with no streak against it.
		s.succ, s.fail = 0, 0
	}
	return changed, streak
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
