package arp_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/l4raw/l4raw/pkg/arp"
	"github.com/l4raw/l4raw/pkg/arp/arptest"
	"github.com/l4raw/l4raw/pkg/neigh"
)

// Addresses: 198.18.0.0/15 and locally administered MACs only.
var (
	ourMAC   = [6]byte{0x02, 0, 0, 0, 0, 0x0a}
	hostB    = [6]byte{0x02, 0, 0, 0, 0, 0x0b}
	hostC    = [6]byte{0x02, 0, 0, 0, 0, 0x0c}
	vip      = netip.MustParseAddr("198.18.5.100")
	ipB      = netip.MustParseAddr("198.18.5.2")
	ipOther  = netip.MustParseAddr("198.18.5.7")
	bcast    = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	testLink = neigh.Link{Index: 7, Name: "lan0", MAC: ourMAC, MTU: 1500, Up: true}
)

// fast is a schedule in milliseconds, so that tests take little time.
func fast() arp.Timing {
	return arp.Timing{
		ProbeNum: 3, ProbeMin: 10 * time.Millisecond, ProbeMax: 10 * time.Millisecond,
		AnnounceWait: 50 * time.Millisecond,
		AnnounceNum:  2, AnnounceInterval: 30 * time.Millisecond,
		DefendInterval: 10 * time.Second,
	}
}

func frame(t testing.TB, p arp.Packet) []byte {
	t.Helper()
	b, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func request(from [6]byte, sender, target netip.Addr) arp.Packet {
	return arp.Packet{EthDst: bcast, EthSrc: from, Op: arp.OpRequest, SenderMAC: from, SenderIP: sender, TargetIP: target}
}

func replyPkt(from [6]byte, sender netip.Addr, to [6]byte, target netip.Addr) arp.Packet {
	return arp.Packet{EthDst: to, EthSrc: from, Op: arp.OpReply, SenderMAC: from, SenderIP: sender, TargetMAC: to, TargetIP: target}
}

// records is a slog.Handler that keeps what is logged.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }
func (r *records) count(level slog.Level) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.recs {
		if rec.Level == level {
			n++
		}
	}
	return n
}

func newClaim(t *testing.T, conn arp.Conn, opts ...arp.Option) (*arp.Claim, *records) {
	t.Helper()
	logs := &records{}
	c, err := arp.NewClaim(conn, testLink, vip, slog.New(logs), append([]arp.Option{arp.WithTiming(fast())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, logs
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// decode checks a sent frame with gopacket, independently of arp.Parse.
func decode(t *testing.T, b []byte) (*layers.Ethernet, *layers.ARP) {
	t.Helper()
	pkt := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	a, _ := pkt.Layer(layers.LayerTypeARP).(*layers.ARP)
	if eth == nil || a == nil {
		t.Fatalf("not an ARP frame: %x", b)
	}
	if len(b) != 60 {
		t.Errorf("frame of %d bytes, want 60 (padded to the Ethernet minimum)", len(b))
	}
	return eth, a
}

func checkARP(t *testing.T, b []byte, op uint16, ethDst, sha [6]byte, spa netip.Addr, tha [6]byte, tpa netip.Addr) {
	t.Helper()
	eth, a := decode(t, b)
	s, tp := spa.As4(), tpa.As4()
	if !bytes.Equal(eth.DstMAC, ethDst[:]) || !bytes.Equal(eth.SrcMAC, ourMAC[:]) || eth.EthernetType != layers.EthernetTypeARP {
		t.Errorf("ethernet %v > %v type %v; want %v > %v", eth.SrcMAC, eth.DstMAC, eth.EthernetType, net.HardwareAddr(ourMAC[:]), net.HardwareAddr(ethDst[:]))
	}
	if a.AddrType != layers.LinkTypeEthernet || a.Protocol != layers.EthernetTypeIPv4 || a.HwAddressSize != 6 || a.ProtAddressSize != 4 {
		t.Errorf("arp header %v %v %d %d", a.AddrType, a.Protocol, a.HwAddressSize, a.ProtAddressSize)
	}
	if a.Operation != op || !bytes.Equal(a.SourceHwAddress, sha[:]) || !bytes.Equal(a.SourceProtAddress, s[:]) ||
		!bytes.Equal(a.DstHwAddress, tha[:]) || !bytes.Equal(a.DstProtAddress, tp[:]) {
		t.Errorf("arp op %d %x %v > %x %v; want op %d %x %v > %x %v",
			a.Operation, a.SourceHwAddress, net.IP(a.SourceProtAddress), a.DstHwAddress, net.IP(a.DstProtAddress),
			op, sha, spa, tha, tpa)
	}
}

func TestNewClaimValidates(t *testing.T) {
	conn := arptest.NewConn()
	bad := fast()
	bad.ProbeMax = time.Millisecond
	tests := []struct {
		name string
		conn arp.Conn
		link neigh.Link
		ip   string
		opts []arp.Option
		want string
	}{
		{"IPv6", conn, testLink, "2001:db8::1", nil, "not a unicast IPv4 address"},
		{"unspecified", conn, testLink, "0.0.0.0", nil, "not a unicast IPv4 address"},
		{"broadcast", conn, testLink, "255.255.255.255", nil, "not a unicast IPv4 address"},
		{"multicast", conn, testLink, "224.0.0.18", nil, "not a unicast IPv4 address"},
		{"loopback", conn, testLink, "127.0.0.2", nil, "not a unicast IPv4 address"},
		{"no MAC", conn, neigh.Link{Index: 3, Name: "wg0"}, "198.18.5.100", nil, "interface address 00:00:00:00:00:00"},
		{"multicast MAC", conn, neigh.Link{Index: 3, Name: "x", MAC: [6]byte{1, 0, 0x5e, 0, 0, 1}}, "198.18.5.100", nil, "not an Ethernet unicast address"},
		{"no conn", nil, testLink, "198.18.5.100", nil, "no connection"},
		{"bad timing", conn, testLink, "198.18.5.100", []arp.Option{arp.WithTiming(bad)}, "maximum below minimum"},
		{"no probes", conn, testLink, "198.18.5.100", []arp.Option{arp.WithTiming(arp.Timing{AnnounceNum: 1, DefendInterval: time.Second})}, "probe count 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := arp.NewClaim(tt.conn, tt.link, netip.MustParseAddr(tt.ip), nil, tt.opts...)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "arp: claim ") {
				t.Fatalf("NewClaim = %v, %v; want an error containing %q", c, err, tt.want)
			}
		})
	}
	// An IPv4-mapped IPv6 address is the IPv4 address.
	c, err := arp.NewClaim(conn, testLink, netip.MustParseAddr("::ffff:198.18.5.100"), nil)
	if err != nil || c.IP() != vip {
		t.Fatalf("NewClaim(mapped) = %v, %v", c, err)
	}
}

func TestTimingDefaults(t *testing.T) {
	rfc := arp.RFC5227Timing()
	if rfc.ProbeWait != time.Second || rfc.ProbeNum != 3 || rfc.ProbeMin != time.Second || rfc.ProbeMax != 2*time.Second ||
		rfc.AnnounceWait != 2*time.Second || rfc.AnnounceNum != 2 || rfc.AnnounceInterval != 2*time.Second || rfc.DefendInterval != 10*time.Second {
		t.Errorf("RFC5227Timing = %+v", rfc)
	}
	d := arp.DefaultTiming()
	probing := d.ProbeWait + time.Duration(d.ProbeNum-1)*d.ProbeMax + d.AnnounceWait
	if probing != 900*time.Millisecond || d.ProbeNum != 3 || d.AnnounceNum != 2 || d.DefendInterval != 10*time.Second {
		t.Errorf("DefaultTiming = %+v, probing takes %v", d, probing)
	}
}

func TestProbeNoAnswer(t *testing.T) {
	conn := arptest.NewConn()
	// Traffic that is not a conflict: a host asking for the address (a
	// stale client), our own probe looped back, someone else's address,
	// garbage.
	conn.Push(frame(t, request(hostB, ipB, vip)))
	conn.Push(frame(t, request(ourMAC, netip.IPv4Unspecified(), vip)))
	conn.Push(frame(t, request(ourMAC, vip, vip)))
	conn.Push(frame(t, replyPkt(hostC, ipOther, hostB, ipB)))
	conn.Push([]byte{1, 2, 3})
	c, _ := newClaim(t, conn)
	start := time.Now()
	if err := c.Probe(ctxT(t, 5*time.Second)); err != nil {
		t.Fatalf("Probe = %v", err)
	}
	took := time.Since(start)
	tm := fast()
	if min := time.Duration(tm.ProbeNum-1)*tm.ProbeMin + tm.AnnounceWait; took < min {
		t.Errorf("Probe took %v, less than the schedule's %v", took, min)
	}
	sent := conn.Sent()
	if len(sent) != tm.ProbeNum {
		t.Fatalf("sent %d frames, want %d probes", len(sent), tm.ProbeNum)
	}
	for _, s := range sent {
		checkARP(t, s.Frame, layers.ARPRequest, bcast, ourMAC, netip.IPv4Unspecified(), [6]byte{}, vip)
		if a, ok := s.To.(*arp.Addr); !ok || !bytes.Equal(a.HardwareAddr, bcast[:]) {
			t.Errorf("sent to %v, want the broadcast address", s.To)
		}
	}
	if got := c.Stats.Malformed.Load(); got != 1 {
		t.Errorf("Malformed = %d, want 1", got)
	}
}

func TestProbeConflict(t *testing.T) {
	tests := []struct {
		name    string
		answer  arp.Packet
		probing bool
	}{
		// Linux answers a probe for an address it holds with this reply.
		{"reply", replyPkt(hostC, vip, ourMAC, netip.IPv4Unspecified()), false},
		{"request from the address", request(hostC, vip, ipB), false},
		{"announcement", request(hostC, vip, vip), false},
		{"another host probing", request(hostC, netip.IPv4Unspecified(), vip), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := arptest.NewConn()
			answer := frame(t, tt.answer)
			// Answer the second probe.
			conn.OnSend = func(c *arptest.Conn, _ []byte) {
				if len(c.Sent()) == 2 {
					c.Push(answer)
				}
			}
			c, _ := newClaim(t, conn)
			err := c.Probe(ctxT(t, 5*time.Second))
			var ce *arp.ConflictError
			if !errors.As(err, &ce) {
				t.Fatalf("Probe = %v, want a *ConflictError", err)
			}
			if ce.MAC != hostC || ce.IP != vip || ce.Interface != "lan0" || ce.Op != "probe" || ce.Probing != tt.probing {
				t.Errorf("ConflictError = %+v", ce)
			}
			what := "in use by"
			if tt.probing {
				what = "also being probed for by"
			}
			if want := "arp: probe 198.18.5.100 on lan0: " + what + " 02:00:00:00:00:0c"; err.Error() != want {
				t.Errorf("error %q, want %q", err, want)
			}
			if n := len(conn.Sent()); n != 2 {
				t.Errorf("sent %d probes, want 2: Probe stops at the first conflict", n)
			}
		})
	}
}

func TestProbeConflictDuringInitialWait(t *testing.T) {
	conn := arptest.NewConn()
	conn.Push(frame(t, request(hostC, vip, vip)))
	tm := fast()
	tm.ProbeWait = 20 * time.Millisecond
	c, _ := newClaim(t, conn, arp.WithTiming(tm))
	var ce *arp.ConflictError
	if err := c.Probe(ctxT(t, 5*time.Second)); !errors.As(err, &ce) || ce.MAC != hostC {
		t.Fatalf("Probe = %v, want a conflict with %x", err, hostC)
	}
}

func TestProbeEnds(t *testing.T) {
	slow := fast()
	slow.AnnounceWait = time.Hour
	t.Run("context", func(t *testing.T) {
		c, _ := newClaim(t, arptest.NewConn(), arp.WithTiming(slow))
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		err := c.Probe(ctx)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Probe = %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("Probe returned %v after cancel", d)
		}
	})
	t.Run("close", func(t *testing.T) {
		c, _ := newClaim(t, arptest.NewConn(), arp.WithTiming(slow))
		time.AfterFunc(50*time.Millisecond, func() { c.Close() })
		if err := c.Probe(ctxT(t, 5*time.Second)); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Probe = %v, want net.ErrClosed", err)
		}
	})
}

// serve runs Serve in the background and returns a function that stops
// it and returns its result.
func serve(t *testing.T, c *arp.Claim) func() error {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx) }()
	stopped := false
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
		}
		select {
		case err := <-done:
			done <- err
			return err
		case <-time.After(5 * time.Second):
			t.Fatal("Serve did not return within 5 s of its context's end")
			return nil
		}
	}
	t.Cleanup(func() { stop() })
	return stop
}

func TestServeAnswersRequests(t *testing.T) {
	conn := arptest.NewConn()
	c, _ := newClaim(t, conn)
	stop := serve(t, c)
	ignored := [][]byte{
		frame(t, request(hostB, ipB, ipOther)),                           // for another address
		frame(t, replyPkt(hostB, ipB, ourMAC, vip)),                      // a reply to the address: not a question
		frame(t, request(ourMAC, vip, vip)),                              // our own announcement, looped back
		frame(t, request([6]byte{0x01, 0, 0x5e, 0, 0, 1}, ipB, vip)),     // multicast sender: cannot be answered
		frame(t, request([6]byte{}, ipB, vip)),                           // zero sender
		frame(t, request(hostB, ipB, vip))[:41],                          // truncated
		append([]byte{}, frame(t, request(hostB, ipB, vip))[:12]...),     // Ethernet header only
		[]byte("not a frame at all, but long enough to look like one.."), // garbage
	}
	for _, f := range ignored {
		conn.Push(f)
	}
	conn.Push(frame(t, request(hostB, ipB, vip)))
	conn.Push(frame(t, request(hostC, netip.IPv4Unspecified(), vip))) // a probe from another host: answered, so it backs off
	sent, err := conn.WaitSent(ctxT(t, 5*time.Second), 2)
	if err != nil {
		t.Fatalf("sent %d frames: %v", len(sent), err)
	}
	if err := stop(); err != nil {
		t.Fatalf("Serve = %v, want nil after its context ended", err)
	}
	sent = conn.Sent()
	if len(sent) != 2 {
		t.Fatalf("sent %d frames, want the 2 replies", len(sent))
	}
	checkARP(t, sent[0].Frame, layers.ARPReply, hostB, ourMAC, vip, hostB, ipB)
	checkARP(t, sent[1].Frame, layers.ARPReply, hostC, ourMAC, vip, hostC, netip.IPv4Unspecified())
	if a, ok := sent[0].To.(*arp.Addr); !ok || !bytes.Equal(a.HardwareAddr, hostB[:]) {
		t.Errorf("reply sent to %v, want %x", sent[0].To, hostB)
	}
	if r, m, cf := c.Stats.Replies.Load(), c.Stats.Malformed.Load(), c.Stats.Conflicts.Load(); r != 2 || m != 3 || cf != 0 {
		t.Errorf("stats: %d replies, %d malformed, %d conflicts; want 2, 3, 0", r, m, cf)
	}
}

func TestServeDefends(t *testing.T) {
	conn := arptest.NewConn()
	c, logs := newClaim(t, conn)
	serve(t, c)
	ctx := ctxT(t, 5*time.Second)
	// C announces the address: we defend once.
	conn.Push(frame(t, request(hostC, vip, vip)))
	sent, err := conn.WaitSent(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	checkARP(t, sent[0].Frame, layers.ARPRequest, bcast, ourMAC, vip, [6]byte{}, vip)
	// More conflicts within DefendInterval: counted, not answered, logged
	// once per host; B asking for the address still gets its reply.
	conn.Push(frame(t, replyPkt(hostC, vip, hostB, ipB)))
	conn.Push(frame(t, request(hostC, vip, ipB)))
	conn.Push(frame(t, request(hostB, ipB, vip)))
	if sent, err = conn.WaitSent(ctx, 2); err != nil {
		t.Fatal(err)
	}
	checkARP(t, sent[1].Frame, layers.ARPReply, hostB, ourMAC, vip, hostB, ipB)
	// A second impostor is logged too.
	conn.Push(frame(t, request(hostB, vip, vip)))
	deadline := time.Now().Add(2 * time.Second)
	for c.Stats.Conflicts.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := len(conn.Sent()); n != 2 {
		t.Errorf("sent %d frames, want 2: one defence per DefendInterval", n)
	}
	if cf, d := c.Stats.Conflicts.Load(), c.Stats.Defences.Load(); cf != 4 || d != 1 {
		t.Errorf("%d conflicts, %d defences; want 4, 1", cf, d)
	}
	if n := logs.count(slog.LevelError); n != 2 {
		t.Errorf("%d error logs, want one per conflicting host (2)", n)
	}
}

func TestServeDefendOnceGivesUp(t *testing.T) {
	conn := arptest.NewConn()
	c, _ := newClaim(t, conn, arp.WithDefence(arp.DefendOnce))
	conn.Push(frame(t, request(hostC, vip, vip)))
	conn.Push(frame(t, request(hostC, vip, vip)))
	// Serve ends by itself.
	err := c.Serve(ctxT(t, 5*time.Second))
	var ce *arp.ConflictError
	if !errors.As(err, &ce) || ce.Op != "serve" || ce.MAC != hostC {
		t.Fatalf("Serve = %v, want a *ConflictError from serve naming %x", err, hostC)
	}
	if d := c.Stats.Defences.Load(); d != 1 {
		t.Errorf("%d defences, want 1", d)
	}
}

func TestServeEnds(t *testing.T) {
	c, _ := newClaim(t, arptest.NewConn())
	done := make(chan error, 1)
	go func() { done <- c.Serve(t.Context()) }()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve = %v after Close, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve still running 5 s after Close")
	}
}

func TestProbeAndServeExclusive(t *testing.T) {
	slow := fast()
	slow.AnnounceWait = time.Hour
	conn := arptest.NewConn()
	c, _ := newClaim(t, conn, arp.WithTiming(slow))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Probe(ctx) }()
	if _, err := conn.WaitSent(ctxT(t, 5*time.Second), 1); err != nil {
		t.Fatal(err) // Probe has not started
	}
	if err := c.Serve(ctx); err == nil || !strings.Contains(err.Error(), "already reading") {
		t.Fatalf("Serve during Probe = %v", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Probe = %v", err)
	}
}

func TestAnnounce(t *testing.T) {
	conn := arptest.NewConn()
	c, _ := newClaim(t, conn)
	start := time.Now()
	if err := c.Announce(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	tm := fast()
	if took := time.Since(start); took < time.Duration(tm.AnnounceNum-1)*tm.AnnounceInterval {
		t.Errorf("Announce took %v, less than its schedule", took)
	}
	sent := conn.Sent()
	if len(sent) != tm.AnnounceNum {
		t.Fatalf("sent %d frames, want %d", len(sent), tm.AnnounceNum)
	}
	for _, s := range sent {
		checkARP(t, s.Frame, layers.ARPRequest, bcast, ourMAC, vip, [6]byte{}, vip)
	}

	t.Run("cancelled", func(t *testing.T) {
		conn := arptest.NewConn()
		slow := fast()
		slow.AnnounceInterval = time.Hour
		c, _ := newClaim(t, conn, arp.WithTiming(slow))
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(20*time.Millisecond, cancel)
		if err := c.Announce(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Announce = %v, want context.Canceled", err)
		}
		if n := len(conn.Sent()); n != 1 {
			t.Fatalf("sent %d, want 1 before the cancel", n)
		}
	})
	t.Run("closed", func(t *testing.T) {
		c, _ := newClaim(t, arptest.NewConn())
		c.Close()
		err := c.Announce(t.Context())
		if !errors.Is(err, net.ErrClosed) || !strings.HasPrefix(err.Error(), "arp: announce 198.18.5.100 on lan0: ") {
			t.Fatalf("Announce = %v", err)
		}
		if n := c.Stats.WriteErrors.Load(); n != 1 {
			t.Errorf("WriteErrors = %d, want 1", n)
		}
	})
}

// TestAnnounceWhileServing is the daemon's sequence: Probe, then Serve
// with Announce beside it. Run with -race.
func TestAnnounceWhileServing(t *testing.T) {
	conn := arptest.NewConn()
	c, _ := newClaim(t, conn)
	ctx := ctxT(t, 5*time.Second)
	if err := c.Probe(ctx); err != nil {
		t.Fatal(err)
	}
	serve(t, c)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := c.Announce(ctx); err != nil {
			t.Error(err)
		}
	})
	for range 10 {
		conn.Push(frame(t, request(hostB, ipB, vip)))
	}
	wg.Wait()
	if _, err := conn.WaitSent(ctx, 3+2+10); err != nil {
		t.Fatal(err)
	}
	if r := c.Stats.Replies.Load(); r != 10 {
		t.Errorf("%d replies, want 10", r)
	}
}
