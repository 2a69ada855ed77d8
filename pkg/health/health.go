// Package health runs active checks against backends and reports when one
// goes up or down.
//
// Each target has its own loop: one probe per interval, started at a random
// phase so that checks of many backends spread over the interval instead of
// arriving together (as HAProxy does). A target goes down after Fall
// consecutive failures and up after Rise consecutive successes; its first
// result sets its initial state directly.
package health

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strconv"
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
}

// Event reports a state change of a target.
type Event struct {
	ID     int
	Addr   netip.AddrPort
	Up     bool
	Reason string // "connect: connection refused", "timeout after 1s", "2 successes", "initial check succeeded"
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
// Checker's goroutines. It may call Up, but not SetTargets (SetTargets
// waits for in-flight probes and their events to finish).
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

	st       state
	loopDone chan struct{} // closed when the loop exits; nil if none started
}

// New returns a Checker with no targets. A nil log discards; a nil onChange
// is allowed.
func New(log *slog.Logger, p Prober, onChange func(Event)) *Checker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if onChange == nil {
		onChange = func(Event) {}
	}
	return &Checker{log: log, prober: p, onChange: onChange, targets: make(map[int]*target)}
}

// SetTargets replaces the set of targets. A new ID, or a known ID with a new
// address, starts with an unknown state and gets an initial probe at once
// while Run is active (otherwise at the next Initial or Run). A known ID
// with only a new Config keeps its state and restarts its loop. A removed
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
		if t, keep := want[id]; keep && t == old.Target {
			continue
		}
		old.cancel()
		stopped = append(stopped, stoppedTarget{old, old.loopDone})
	}
	c.mu.Unlock()
	for _, st := range stopped {
		st.tg.probeMu.Lock() // wait for a check in flight, event included
		st.tg.probeMu.Unlock()
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
			// Same backend, new rhythm: keep what we know of it, but not a
			// streak measured against the old thresholds.
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
	pctx, cancel := context.WithTimeout(ctx, tg.Config.Timeout)
	stop := context.AfterFunc(tg.ctx, cancel)
	err := c.prober.Probe(pctx, tg.Addr)
	// A refusal that merely arrives late is still a refusal: only an error
	// that is itself a timeout reads "timeout after".
	timedOut := errors.Is(err, context.DeadlineExceeded) ||
		(errors.Is(pctx.Err(), context.DeadlineExceeded) && isTimeout(err))
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
	c.mu.Lock()
	changed, streak := tg.st.observe(err == nil, kind != checkRegular, tg.Config.Rise, tg.Config.Fall)
	up := tg.st.up
	c.mu.Unlock()
	if !changed {
		return
	}
	switch {
	case kind != checkRegular && up:
		reason = "initial check succeeded"
	case up:
		reason = plural(streak, "success", "successes")
	}
	c.emit(Event{ID: tg.ID, Addr: tg.Addr, Up: up, Reason: reason, At: time.Now()}, streak)
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
