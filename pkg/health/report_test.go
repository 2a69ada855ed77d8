package health

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestTargetProber checks that each target uses its own prober when it has
// one, and the Checker's default otherwise.
func TestTargetProber(t *testing.T) {
	def := newFakeProber()
	own := newFakeProber()
	own.set(addrB, errors.New("http: status 503, want 200"))
	rec := newRecorder()
	c := New(nil, def, rec.onChange)
	c.SetTargets([]Target{
		{ID: 1, Addr: addrA, Config: fast},
		{ID: 2, Addr: addrB, Config: fast, Prober: own},
	})
	c.Initial(context.Background())
	if def.count(addrA) != 1 || def.count(addrB) != 0 || own.count(addrB) != 1 || own.count(addrA) != 0 {
		t.Fatalf("probes: default A=%d B=%d, own A=%d B=%d; want each target on its own prober",
			def.count(addrA), def.count(addrB), own.count(addrA), own.count(addrB))
	}
	if !c.Up(1) || c.Up(2) {
		t.Errorf("Up(1)=%v Up(2)=%v, want true, false", c.Up(1), c.Up(2))
	}
	for _, ev := range rec.all() {
		if ev.ID == 2 && ev.Reason != "http: status 503, want 200" {
			t.Errorf("event %+v", ev)
		}
	}
}

// TestNewNilProber checks that a nil default prober means TCP.
func TestNewNilProber(t *testing.T) {
	ln, addr := listen(t)
	results := make(chan error, 10)
	go serve(ln, nil, results)
	rec := newRecorder()
	c := New(nil, nil, rec.onChange)
	c.SetTargets([]Target{{ID: 1, Addr: addr, Config: Config{Interval: time.Second, Timeout: 900 * time.Millisecond}}})
	c.Initial(context.Background())
	if !c.Up(1) {
		t.Fatalf("target with the default prober: events %+v", rec.all())
	}
}

// TestSetTargetsProberChange checks that a new prober for a known target
// keeps its state and is used from then on, that an equal prober value
// keeps the loop, and that a prober that cannot be compared does not panic.
func TestSetTargetsProberChange(t *testing.T) {
	first, second := newFakeProber(), newFakeProber()
	rec := newRecorder()
	c := New(nil, newFakeProber(), rec.onChange)
	c.SetTargets([]Target{{ID: 1, Addr: addrA, Config: fast, Prober: first}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if ev := rec.next(t); !ev.Up {
		t.Fatalf("first event %+v", ev)
	}
	c.SetTargets([]Target{{ID: 1, Addr: addrA, Config: fast, Prober: second}})
	n := first.count(addrA)
	waitFor(t, "probes by the new prober", func() bool { return second.count(addrA) >= 2 })
	if got := first.count(addrA); got != n {
		t.Errorf("old prober used %d more times", got-n)
	}
	if !c.Up(1) || len(rec.all()) != 1 {
		t.Errorf("after prober change: Up %v, events %+v", c.Up(1), rec.all())
	}

	// Equal values are the same check: the loop and its streak survive.
	c.mu.Lock()
	before := c.targets[1]
	c.mu.Unlock()
	c.SetTargets([]Target{{ID: 1, Addr: addrA, Config: fast, Prober: second}})
	c.mu.Lock()
	after := c.targets[1]
	c.mu.Unlock()
	if before != after {
		t.Error("SetTargets with the same prober restarted the target")
	}
	hp := HTTPProber{Path: "/healthz", Status: 204}
	if !sameProber(hp, HTTPProber{Path: "/healthz", Status: 204}) || sameProber(hp, HTTPProber{Path: "/"}) ||
		!sameProber(SendExpectProber{Send: "a", Expect: "b"}, SendExpectProber{Send: "a", Expect: "b"}) ||
		sameProber(hp, SendExpectProber{}) || sameProber(hp, nil) || !sameProber(nil, nil) {
		t.Error("sameProber compares values wrongly")
	}

	// A func prober is not comparable: counted as changed, no panic.
	fn := proberFunc(func(context.Context, netip.AddrPort) error { return nil })
	c.SetTargets([]Target{{ID: 1, Addr: addrA, Config: fast, Prober: fn}})
	c.SetTargets([]Target{{ID: 1, Addr: addrA, Config: fast, Prober: fn}})
	if !c.Up(1) {
		t.Error("state lost across prober changes")
	}
}

// TestReport checks that reported results count like probe results: the
// same fall and rise thresholds, the same log line and event, and streaks
// shared with the probes.
func TestReport(t *testing.T) {
	p := newFakeProber()
	rec := newRecorder()
	var logs syncBuffer
	c := New(slog.New(slog.NewTextHandler(&logs, nil)), p, rec.onChange)
	slow := Config{Interval: time.Hour, Timeout: time.Second, Rise: 2, Fall: 3}
	c.SetTargets([]Target{{ID: 1, Addr: addrA, Config: slow}, {ID: 2, Addr: addrB, Config: slow}})

	// Before the first probe a report is ignored: the probe decides.
	c.Report(1, false, "passive: connection timed out")
	c.Report(99, false, "no such target")
	if evs := rec.all(); len(evs) != 0 || c.Up(1) {
		t.Fatalf("reports before any probe: events %+v", evs)
	}
	c.Initial(context.Background())
	if len(rec.all()) != 2 || !c.Up(1) {
		t.Fatalf("initial events %+v", rec.all())
	}

	// Fall 3: two reports change nothing, the third takes it down.
	for i := 0; i < 2; i++ {
		c.Report(1, false, "passive: connection timed out")
	}
	if len(rec.all()) != 2 || !c.Up(1) {
		t.Fatalf("down before fall: %+v", rec.all())
	}
	c.Report(1, false, "passive: connection timed out")
	evs := rec.all()
	if len(evs) != 3 || evs[2].ID != 1 || evs[2].Up || evs[2].Reason != "passive: connection timed out" || c.Up(1) {
		t.Fatalf("after 3 reported failures: %+v", evs)
	}
	if !strings.Contains(logs.String(), `msg="backend down" id=1 addr=198.18.0.21:80 reason="passive: connection timed out" failures=3`) {
		t.Errorf("log lacks the down line:\n%s", logs.String())
	}

	// Rise 2: one reported success and one probe success bring it back.
	c.Report(1, true, "")
	if c.Up(1) {
		t.Fatal("up after one success, rise is 2")
	}
	c.check(context.Background(), c.targets[1], checkRegular)
	if evs := rec.all(); len(evs) != 4 || !evs[3].Up || evs[3].Reason != "2 successes" {
		t.Fatalf("after report + probe success: %+v", evs)
	}

	// Probe failures and reported failures add up; a success in between
	// resets the streak.
	p.set(addrB, errors.New("connect: connection refused"))
	c.Report(2, false, "passive: reset")
	c.Report(2, true, "")
	c.Report(2, false, "passive: reset")
	c.check(context.Background(), c.targets[2], checkRegular)
	if !c.Up(2) {
		t.Fatal("down although a success broke the streak")
	}
	c.Report(2, false, "")
	if evs := rec.all(); c.Up(2) || evs[len(evs)-1].Reason != "reported failure" {
		t.Fatalf("mixed failures: Up %v, events %+v", c.Up(2), evs)
	}

	// Reasons stay on one line.
	c.Report(1, false, "a\nb")
	c.Report(1, false, "a\nb")
	c.Report(1, false, strings.Repeat("x", 500)+"\n")
	ev := rec.all()[len(rec.all())-1]
	if ev.Up || strings.ContainsAny(ev.Reason, "\n\r") || len(ev.Reason) > maxReason+3 {
		t.Errorf("long reason: %q", ev.Reason)
	}

	// A removed target ignores reports.
	c.SetTargets([]Target{{ID: 2, Addr: addrB, Config: slow}})
	n := len(rec.all())
	c.Report(1, true, "")
	c.Report(1, true, "")
	if len(rec.all()) != n {
		t.Errorf("report for a removed target: %+v", rec.all()[n:])
	}
}

// TestReportConcurrent checks that reports racing with probes keep a
// target's events in the order of its state changes: they alternate, and
// the last one agrees with Up.
func TestReportConcurrent(t *testing.T) {
	p := newFakeProber()
	// Room for every event: a full channel would block onChange.
	rec := &recorder{ch: make(chan Event, 100000)}
	c := New(nil, p, rec.onChange)
	cfg := Config{Interval: time.Millisecond, Timeout: 5 * time.Millisecond, Rise: 1, Fall: 1}
	c.SetTargets([]Target{{ID: 1, Addr: addrA, Config: cfg}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	rec.next(t)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				c.Report(1, i%2 == 0, "passive")
			}
		}()
	}
	// Make the probes fail half the time too.
	stopFlip := make(chan struct{})
	flipped := make(chan struct{})
	go func() {
		defer close(flipped)
		for i := 0; ; i++ {
			select {
			case <-stopFlip:
				return
			case <-time.After(time.Millisecond):
			}
			if i%2 == 0 {
				p.set(addrA, errors.New("connect: connection refused"))
			} else {
				p.set(addrA, nil)
			}
		}
	}()
	wg.Wait()
	close(stopFlip)
	<-flipped
	cancel()
	<-done
	evs := rec.all()
	for i := 1; i < len(evs); i++ {
		if evs[i].Up == evs[i-1].Up {
			t.Fatalf("events %d and %d both up=%v: out of order", i-1, i, evs[i].Up)
		}
	}
	if last := evs[len(evs)-1]; last.Up != c.Up(1) {
		t.Errorf("last event up=%v, Up()=%v", last.Up, c.Up(1))
	}
	t.Logf("%d events", len(evs))
}

// syncBuffer is a bytes.Buffer safe for the Checker's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
