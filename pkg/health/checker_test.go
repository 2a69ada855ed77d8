package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestStateObserve(t *testing.T) {
	// Each step is one result: '+' success, '-' failure, 'I' initial success,
	// 'i' initial failure. want marks the steps that change the state with
	// the new state ('U' up, 'D' down) and '.' for no change.
	tests := []struct {
		name       string
		rise, fall int
		steps      string
		want       string
	}{
		{"first result sets the state", 2, 3, "+", "U"},
		{"first failure sets down", 2, 3, "-", "D"},
		{"fall after three", 2, 3, "+---", "U..D"},
		{"interrupted fall", 2, 3, "+--+---", "U.....D"},
		{"rise after two", 2, 3, "-++", "D.U"},
		{"interrupted rise", 2, 3, "-+-++", "D...U"},
		{"flapping never changes", 2, 3, "+-+-+-+-", "U......."},
		{"rise 1 fall 1", 1, 1, "+-+-", "UDUD"},
		{"streak resets on change", 2, 2, "+--++--", "U.D.U.D"},
		{"extra successes no event", 2, 3, "++++", "U..."},
		{"initial overrides streak", 2, 3, "+-i", "U.D"},
		{"initial same state no event", 2, 3, "+I", "U."},
		{"initial then counts afresh", 2, 3, "+--I--", "U....."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s state
			var got strings.Builder
			for _, r := range tt.steps {
				ok := r == '+' || r == 'I'
				initial := r == 'I' || r == 'i'
				changed, _ := s.observe(ok, initial, tt.rise, tt.fall)
				switch {
				case !changed:
					got.WriteByte('.')
				case s.up:
					got.WriteByte('U')
				default:
					got.WriteByte('D')
				}
			}
			if got.String() != tt.want {
				t.Errorf("steps %s: got %s, want %s", tt.steps, got.String(), tt.want)
			}
		})
	}
}

func TestStateStreak(t *testing.T) {
	var s state
	s.observe(true, false, 2, 3)
	for i := 1; i <= 3; i++ {
		changed, streak := s.observe(false, false, 2, 3)
		if streak != i || changed != (i == 3) {
			t.Fatalf("failure %d: changed %v streak %d", i, changed, streak)
		}
	}
	s.observe(true, false, 2, 3)
	if changed, streak := s.observe(true, false, 2, 3); !changed || streak != 2 {
		t.Fatalf("rise: changed %v streak %d", changed, streak)
	}
}

// fakeProber answers from a per-address result that tests change while the
// Checker runs. A result of errHang blocks until the probe's context ends.
type fakeProber struct {
	mu     sync.Mutex
	result map[netip.AddrPort]error
	calls  map[netip.AddrPort]int
	active map[netip.AddrPort]int // probes in flight
}

var errHang = errors.New("hang")

func newFakeProber() *fakeProber {
	return &fakeProber{result: map[netip.AddrPort]error{}, calls: map[netip.AddrPort]int{}, active: map[netip.AddrPort]int{}}
}

func (f *fakeProber) set(a netip.AddrPort, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.result[a] = err
}

func (f *fakeProber) count(a netip.AddrPort) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[a]
}

func (f *fakeProber) Probe(ctx context.Context, a netip.AddrPort) error {
	f.mu.Lock()
	f.calls[a]++
	f.active[a]++
	if f.active[a] > 1 {
		f.mu.Unlock()
		panic(fmt.Sprintf("two probes of %v at once", a))
	}
	err := f.result[a]
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.active[a]--
		f.mu.Unlock()
	}()
	if err == errHang {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

// recorder collects events.
type recorder struct {
	mu     sync.Mutex
	events []Event
	ch     chan Event
}

func newRecorder() *recorder { return &recorder{ch: make(chan Event, 1000)} }

func (r *recorder) onChange(ev Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	r.ch <- ev
}

// next waits for the next event, failing after a generous bound.
func (r *recorder) next(t *testing.T) Event {
	t.Helper()
	select {
	case ev := <-r.ch:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
		return Event{}
	}
}

func (r *recorder) all() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

var (
	addrA = netip.MustParseAddrPort("198.18.0.21:80")
	addrB = netip.MustParseAddrPort("198.18.0.22:80")
	addrC = netip.MustParseAddrPort("198.18.0.23:80")
)

// fast is a rhythm that keeps tests short; assertions never depend on it
// beyond "eventually".
var fast = Config{Interval: 10 * time.Millisecond, Timeout: 5 * time.Millisecond, Rise: 2, Fall: 3}

func TestInitial(t *testing.T) {
	p := newFakeProber()
	p.set(addrB, errors.New("connect: connection refused"))
	p.set(addrC, errHang)
	rec := newRecorder()
	var logs bytes.Buffer
	c := New(slog.New(slog.NewTextHandler(&logs, nil)), p, rec.onChange)
	c.SetTargets([]Target{
		{ID: 1, Addr: addrA, Config: fast},
		{ID: 2, Addr: addrB, Config: fast},
		{ID: 3, Addr: addrC, Config: Config{Interval: time.Second, Timeout: 50 * time.Millisecond}},
	})
	for id := 1; id <= 3; id++ {
		if c.Up(id) {
			t.Errorf("target %d up before any probe", id)
		}
	}
	start := time.Now()
	c.Initial(context.Background())
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Initial took %v, want about the longest timeout (50ms)", d)
	}
	got := map[int]Event{}
	for _, ev := range rec.all() {
		got[ev.ID] = ev
	}
	want := map[int]struct {
		up     bool
		reason string
	}{
		1: {true, "initial check succeeded"},
		2: {false, "connect: connection refused"},
		3: {false, "timeout after 50ms"},
	}
	if len(rec.all()) != 3 {
		t.Fatalf("events: %+v, want one per target", rec.all())
	}
	for id, w := range want {
		ev := got[id]
		if ev.Up != w.up || ev.Reason != w.reason || ev.At.IsZero() || c.Up(id) != w.up {
			t.Errorf("target %d: event %+v, Up %v; want up=%v reason %q", id, ev, c.Up(id), w.up, w.reason)
		}
	}
	if ev := got[2]; ev.Addr != addrB {
		t.Errorf("event address %v, want %v", ev.Addr, addrB)
	}
	if n := strings.Count(logs.String(), "\n"); n != 3 {
		t.Errorf("%d log lines, want 3:\n%s", n, logs.String())
	}
	for _, s := range []string{`msg="backend down" id=2 addr=198.18.0.22:80 reason="connect: connection refused" failures=1`,
		`msg="backend up" id=1 addr=198.18.0.21:80 reason="initial check succeeded"`} {
		if !strings.Contains(logs.String(), s) {
			t.Errorf("log lacks %s:\n%s", s, logs.String())
		}
	}

	// A second Initial reports only changes.
	p.set(addrB, nil)
	c.Initial(context.Background())
	if evs := rec.all(); len(evs) != 4 || evs[3].ID != 2 || !evs[3].Up {
		t.Errorf("after second Initial: %+v", evs)
	}
}

func TestInitialCancelled(t *testing.T) {
	p := newFakeProber()
	p.set(addrA, errHang)
	rec := newRecorder()
	c := New(nil, p, rec.onChange)
	c.SetTargets([]Target{{ID: 1, Addr: addrA, Config: Config{Interval: time.Minute, Timeout: 30 * time.Second}}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	c.Initial(ctx)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Initial ignored its context: %v", d)
	}
	if evs := rec.all(); len(evs) != 0 {
		t.Errorf("a cancelled probe produced events: %+v", evs)
	}
}

func TestRunRiseFall(t *testing.T) {
	p := newFakeProber()
	rec := newRecorder()
	c := New(nil, p, rec.onChange)
	c.SetTargets([]Target{{ID: 7, Addr: addrA, Config: fast}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	defer func() { cancel(); <-done }()

	if ev := rec.next(t); !ev.Up || ev.ID != 7 || ev.Reason != "initial check succeeded" {
		t.Fatalf("first event %+v", ev)
	}
	before := p.count(addrA)
	p.set(addrA, errors.New("connect: no route to host"))
	ev := rec.next(t)
	if ev.Up || ev.Reason != "connect: no route to host" || c.Up(7) {
		t.Fatalf("down event %+v, Up %v", ev, c.Up(7))
	}
	if n := p.count(addrA) - before; n < fast.Fall {
		t.Errorf("down after %d probes, want at least %d", n, fast.Fall)
	}
	before = p.count(addrA)
	p.set(addrA, nil)
	ev = rec.next(t)
	if !ev.Up || ev.Reason != "2 successes" || !c.Up(7) {
		t.Fatalf("up event %+v", ev)
	}
	if n := p.count(addrA) - before; n < fast.Rise {
		t.Errorf("up after %d probes, want at least %d", n, fast.Rise)
	}
	p.set(addrA, errHang)
	if ev = rec.next(t); ev.Up || ev.Reason != "timeout after 5ms" {
		t.Fatalf("timeout event %+v", ev)
	}
}

func TestSetTargetsRemoveStopsProbes(t *testing.T) {
	p := newFakeProber()
	rec := newRecorder()
	c := New(nil, p, rec.onChange)
	c.SetTargets([]Target{{ID: 1, Addr: addrA, Config: fast}, {ID: 2, Addr: addrB, Config: fast}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitFor(t, "target 1 probed 3 times", func() bool { return p.count(addrA) >= 3 })
	p.set(addrA, errHang) // removal must also cut a probe in flight short
	c.SetTargets([]Target{{ID: 2, Addr: addrB, Config: fast}})
	nEvents, nA := len(rec.all()), p.count(addrA)
	bBefore := p.count(addrB)
	time.Sleep(20 * fast.Interval)
	if got := p.count(addrA); got != nA {
		t.Errorf("removed target probed %d more times", got-nA)
	}
	waitFor(t, "the remaining target's probes", func() bool { return p.count(addrB) > bBefore })
	for _, ev := range rec.all()[nEvents:] {
		if ev.ID == 1 {
			t.Errorf("event for a removed target: %+v", ev)
		}
	}
	if c.Up(1) {
		t.Error("Up(removed) = true")
	}

	// A target added while running gets its initial probe at once.
	p.set(addrC, errors.New("connect: connection refused"))
	c.SetTargets([]Target{{ID: 2, Addr: addrB, Config: fast}, {ID: 3, Addr: addrC, Config: Config{Interval: time.Hour, Timeout: time.Second}}})
	for {
		ev := rec.next(t)
		if ev.ID == 3 {
			if ev.Up || ev.Reason != "connect: connection refused" {
				t.Errorf("new target event %+v", ev)
			}
			break
		}
	}
}

func TestSetTargetsReconfigure(t *testing.T) {
	p := newFakeProber()
	rec := newRecorder()
	c := New(nil, p, rec.onChange)
	c.SetTargets([]Target{{ID: 1, Addr: addrA, Config: fast}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if ev := rec.next(t); !ev.Up {
		t.Fatalf("first event %+v", ev)
	}

	// A new rhythm keeps the state: no event, still up, probed anew.
	slow := fast
	slow.Interval = 20 * time.Millisecond
	c.SetTargets([]Target{{ID: 1, Addr: addrA, Config: slow}})
	n := p.count(addrA)
	waitFor(t, "probes with the new config", func() bool { return p.count(addrA) >= n+2 })
	if !c.Up(1) || len(rec.all()) != 1 {
		t.Errorf("after config change: Up %v, events %+v", c.Up(1), rec.all())
	}

	// A new address is a new backend: unknown, then an initial event.
	p.set(addrB, errors.New("connect: connection refused"))
	c.SetTargets([]Target{{ID: 1, Addr: addrB, Config: slow}})
	ev := rec.next(t)
	if ev.ID != 1 || ev.Addr != addrB || ev.Up {
		t.Errorf("after address change: %+v", ev)
	}
	nA := p.count(addrA)
	time.Sleep(10 * slow.Interval)
	if got := p.count(addrA); got != nA {
		t.Errorf("old address probed %d more times", got-nA)
	}
}

// TestRemoveCutsProbeShort checks that SetTargets does not wait out the
// timeout of a probe in flight, and that the cut probe is no failure.
func TestRemoveCutsProbeShort(t *testing.T) {
	p := newFakeProber()
	rec := newRecorder()
	c := New(nil, p, rec.onChange)
	c.SetTargets([]Target{{ID: 1, Addr: addrA, Config: Config{Interval: time.Hour, Timeout: time.Hour}}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	rec.next(t)
	p.set(addrA, errHang)
	c.SetTargets([]Target{{ID: 1, Addr: addrA, Config: Config{Interval: 10 * time.Millisecond, Timeout: time.Hour}}})
	waitFor(t, "a probe in flight", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.active[addrA] == 1
	})
	start := time.Now()
	c.SetTargets(nil)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("SetTargets waited %v for a hanging probe", d)
	}
	if evs := rec.all(); len(evs) != 1 {
		t.Errorf("events %+v, want only the initial one", evs)
	}
}

// TestNoGoroutineLeak checks that the end of Run's context ends every
// goroutine the Checker started, probes in flight included.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	p := newFakeProber()
	p.set(addrB, errHang)
	c := New(nil, p, nil)
	var ts []Target
	for i := 0; i < 50; i++ {
		ts = append(ts, Target{ID: i, Addr: netip.AddrPortFrom(addrA.Addr(), uint16(1000+i)), Config: fast})
	}
	ts = append(ts, Target{ID: 99, Addr: addrB, Config: Config{Interval: time.Hour, Timeout: time.Hour}})
	c.SetTargets(ts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	waitFor(t, "probes", func() bool { return p.count(ts[49].Addr) >= 2 })

	// A second Run while one is active returns at once.
	second := make(chan struct{})
	go func() { defer close(second); c.Run(context.Background()) }()
	select {
	case <-second:
	case <-time.After(5 * time.Second):
		t.Fatal("second Run did not return")
	}

	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

func TestConfigDefaults(t *testing.T) {
	got := Config{Interval: -1, Rise: -5}.withDefaults()
	want := Config{Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3}
	if got != want {
		t.Errorf("withDefaults = %+v, want %+v", got, want)
	}
	keep := Config{Interval: time.Minute, Timeout: 3 * time.Second, Rise: 5, Fall: 1}
	if got := keep.withDefaults(); got != keep {
		t.Errorf("withDefaults changed a full config: %+v", got)
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type proberFunc func(ctx context.Context, a netip.AddrPort) error

func (f proberFunc) Probe(ctx context.Context, a netip.AddrPort) error { return f(ctx, a) }

// TestLateErrorIsNotTimeout checks that only errors that are timeouts read
// "timeout after": a refusal that arrives after the deadline keeps its text.
func TestLateErrorIsNotTimeout(t *testing.T) {
	late := proberFunc(func(ctx context.Context, a netip.AddrPort) error {
		<-ctx.Done()
		return errors.New("connect: connection refused")
	})
	rec := newRecorder()
	c := New(nil, late, rec.onChange)
	c.SetTargets([]Target{{ID: 1, Addr: addrA, Config: Config{Interval: time.Second, Timeout: time.Millisecond}}})
	c.Initial(context.Background())
	if evs := rec.all(); len(evs) != 1 || evs[0].Reason != "connect: connection refused" {
		t.Errorf("events %+v", evs)
	}
}

// TestOnChangeSerialised checks that onChange never runs twice at once, even
// when many targets change together.
func TestOnChangeSerialised(t *testing.T) {
	var mu sync.Mutex
	inside, overlaps, calls := 0, 0, 0
	c := New(nil, newFakeProber(), func(Event) {
		mu.Lock()
		inside++
		if inside > 1 {
			overlaps++
		}
		calls++
		mu.Unlock()
		time.Sleep(time.Millisecond)
		mu.Lock()
		inside--
		mu.Unlock()
	})
	var ts []Target
	for i := 0; i < 50; i++ {
		ts = append(ts, Target{ID: i, Addr: netip.AddrPortFrom(addrA.Addr(), uint16(2000+i)), Config: fast})
	}
	c.SetTargets(ts)
	c.Initial(context.Background())
	if calls != 50 || overlaps != 0 {
		t.Errorf("%d calls, %d overlapping", calls, overlaps)
	}
}
