package arp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/l4raw/l4raw/pkg/neigh"
)

// Conn is what a Claim needs from a socket: the part of net.PacketConn it
// uses, so that a Socket, any net.PacketConn or a test fake will do. Frames
// are whole Ethernet frames. A read deadline in the past must make a
// waiting ReadFrom return a timeout (os.ErrDeadlineExceeded or a net.Error
// whose Timeout is true); ReadFrom after Close must fail.
type Conn interface {
	ReadFrom(b []byte) (n int, from net.Addr, err error)
	WriteTo(b []byte, to net.Addr) (int, error)
	Close() error
	SetReadDeadline(t time.Time) error
}

// RFC 5227 section 1.1 constants.
const (
	RFCProbeWait        = 1 * time.Second // initial random delay
	RFCProbeNum         = 3               // number of probe packets
	RFCProbeMin         = 1 * time.Second // minimum delay until repeated probe
	RFCProbeMax         = 2 * time.Second // maximum delay until repeated probe
	RFCAnnounceWait     = 2 * time.Second // delay before announcing
	RFCAnnounceNum      = 2               // number of announcement packets
	RFCAnnounceInterval = 2 * time.Second // time between announcement packets
	RFCDefendInterval   = 10 * time.Second
)

// Timing is the schedule of probes, announcements and defences.
type Timing struct {
	// ProbeWait bounds the random delay before the first probe (RFC 5227
	// PROBE_WAIT), which keeps hosts that power up together from probing
	// in lockstep.
	ProbeWait time.Duration
	// ProbeNum probes are sent, spaced by a random delay in
	// [ProbeMin, ProbeMax].
	ProbeNum           int
	ProbeMin, ProbeMax time.Duration
	// AnnounceWait is how long Probe keeps listening after its last probe.
	AnnounceWait time.Duration
	// AnnounceNum announcements, AnnounceInterval apart, make up Announce.
	AnnounceNum      int
	AnnounceInterval time.Duration
	// DefendInterval is the least time between two defensive announcements.
	DefendInterval time.Duration
}

// RFC5227Timing is the schedule of RFC 5227 section 1.1: probing takes
// 3 to 7 s (up to 9 s with its initial delay).
func RFC5227Timing() Timing {
	return Timing{
		ProbeWait: RFCProbeWait, ProbeNum: RFCProbeNum, ProbeMin: RFCProbeMin, ProbeMax: RFCProbeMax,
		AnnounceWait: RFCAnnounceWait, AnnounceNum: RFCAnnounceNum, AnnounceInterval: RFCAnnounceInterval,
		DefendInterval: RFCDefendInterval,
	}
}

// DefaultTiming is the schedule a Claim uses unless told otherwise: three
// probes 200 ms apart, no initial delay, and 500 ms of listening after the
// last one, so Probe takes 0.9 s instead of RFC 5227's up to 9 s.
//
// The RFC's intervals date from shared 10 Mb/s segments; a LAN host answers
// within milliseconds, and ACD implementations for modern links (n-acd, used
// by NetworkManager) scale the whole schedule down to hundreds of
// milliseconds. The 500 ms tail leaves room for a Wi-Fi host in power save,
// which gets a broadcast only after the next DTIM beacon (100-300 ms with
// common beacon settings). The initial delay guards against hosts booting in
// lockstep after a power cut; a daemon starting on one host has no such
// crowd. Announcements and defences keep the RFC's schedule: they delay
// nothing.
func DefaultTiming() Timing {
	return Timing{
		ProbeWait: 0, ProbeNum: RFCProbeNum, ProbeMin: 200 * time.Millisecond, ProbeMax: 200 * time.Millisecond,
		AnnounceWait: 500 * time.Millisecond, AnnounceNum: RFCAnnounceNum, AnnounceInterval: RFCAnnounceInterval,
		DefendInterval: RFCDefendInterval,
	}
}

func (t Timing) validate() error {
	switch {
	case t.ProbeNum < 1:
		return fmt.Errorf("probe count %d: at least 1", t.ProbeNum)
	case t.AnnounceNum < 1:
		return fmt.Errorf("announcement count %d: at least 1", t.AnnounceNum)
	case t.ProbeWait < 0 || t.ProbeMin < 0 || t.AnnounceWait < 0 || t.AnnounceInterval < 0:
		return fmt.Errorf("negative interval in %+v", t)
	case t.ProbeMax < t.ProbeMin:
		return fmt.Errorf("probe interval [%v, %v]: maximum below minimum", t.ProbeMin, t.ProbeMax)
	case t.DefendInterval <= 0:
		return fmt.Errorf("defend interval %v: must be positive", t.DefendInterval)
	}
	return nil
}

// Defence is what Serve does when another host claims the address.
type Defence int

const (
	// DefendAlways keeps the address whatever happens and sends at most one
	// defensive announcement per DefendInterval (RFC 5227 section 2.4 (c):
	// for hosts that must keep a well-known address, such as a VIP). Two
	// hosts that both defend do not loop: each sends one announcement per
	// interval.
	DefendAlways Defence = iota
	// DefendOnce defends once and gives up on a second conflict within
	// DefendInterval: Serve returns a *ConflictError (section 2.4 (b)).
	DefendOnce
)

// ConflictError reports another host that uses or claims the address.
type ConflictError struct {
	Op        string // "probe" or "serve"
	IP        netip.Addr
	Interface string
	// MAC is the other host's: the ARP sender hardware address.
	MAC [6]byte
	// Probing is set when the other host was itself probing for the
	// address (RFC 5227 section 2.1.1: two hosts probing at once both back
	// off) rather than using it.
	Probing bool
}

func (e *ConflictError) Error() string {
	what := "in use by"
	if e.Probing {
		what = "also being probed for by"
	}
	return fmt.Sprintf("arp: %s %v on %s: %s %s", e.Op, e.IP, e.Interface, what, macString(e.MAC))
}

// Stats counts what a Claim did; fields are safe to read at any time.
type Stats struct {
	Replies     atomic.Uint64 // ARP replies sent for the address
	Conflicts   atomic.Uint64 // ARP packets from another host with the address as sender
	Defences    atomic.Uint64 // defensive announcements sent
	Malformed   atomic.Uint64 // frames that were not Ethernet/IPv4 ARP
	WriteErrors atomic.Uint64 // frames the socket refused
}

// Option changes a Claim's defaults.
type Option func(*Claim)

// WithTiming replaces DefaultTiming, for example with RFC5227Timing or,
// in tests, with millisecond intervals.
func WithTiming(t Timing) Option { return func(c *Claim) { c.timing = t } }

// WithDefence replaces DefendAlways.
func WithDefence(d Defence) Option { return func(c *Claim) { c.defence = d } }

// Claim claims one IPv4 address on one interface with ARP. Probe, then
// Serve; Announce may run while Serve does. Probe and Serve read from the
// Conn and must not run at the same time.
type Claim struct {
	conn    Conn
	link    neigh.Link
	ip      netip.Addr
	log     *slog.Logger
	timing  Timing
	defence Defence

	// The frames that never change, built once.
	probeFrame, announceFrame []byte

	reading   atomic.Bool // a Probe or Serve is reading
	closeOnce sync.Once
	closeErr  error

	// Stats counts replies, conflicts and errors.
	Stats Stats
}

// maxLoggedMACs bounds the set of conflicting hosts Serve remembers so as to
// log each of them once; a LAN with more than that many impostors is under
// attack and the Conflicts counter tells the rest.
const maxLoggedMACs = 16

// NewClaim returns a Claim of ip on link, reading and writing frames on
// conn, which the Claim owns from then on (Close closes it). link must
// have an Ethernet address; ip must be a unicast IPv4 address.
func NewClaim(conn Conn, link neigh.Link, ip netip.Addr, log *slog.Logger, opts ...Option) (*Claim, error) {
	ip = ip.Unmap()
	if !ip.Is4() || !(ip.IsGlobalUnicast() || ip.IsLinkLocalUnicast()) {
		return nil, fmt.Errorf("arp: claim %v on %s: not a unicast IPv4 address", ip, link.Name)
	}
	if link.MAC == ([6]byte{}) || link.MAC[0]&1 != 0 {
		return nil, fmt.Errorf("arp: claim %v on %s: interface address %s: not an Ethernet unicast address", ip, link.Name, macString(link.MAC))
	}
	if conn == nil {
		return nil, fmt.Errorf("arp: claim %v on %s: no connection", ip, link.Name)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Claim{conn: conn, link: link, ip: ip, timing: DefaultTiming(), defence: DefendAlways}
	for _, o := range opts {
		o(c)
	}
	if err := c.timing.validate(); err != nil {
		return nil, fmt.Errorf("arp: claim %v on %s: timing: %w", ip, link.Name, err)
	}
	pr, an := probe(link.MAC, ip), announcement(link.MAC, ip)
	var err error
	if c.probeFrame, err = pr.MarshalBinary(); err != nil {
		return nil, err
	}
	if c.announceFrame, err = an.MarshalBinary(); err != nil {
		return nil, err
	}
	c.log = log.With("vip", ip.String(), "interface", link.Name)
	return c, nil
}

// IP returns the claimed address.
func (c *Claim) IP() netip.Addr { return c.ip }

// Close closes the Conn: a running Serve returns nil, a running Probe an
// error.
func (c *Claim) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.conn.Close() })
	return c.closeErr
}

func (c *Claim) send(b []byte, dst [6]byte) error {
	if _, err := c.conn.WriteTo(b, &Addr{HardwareAddr: net.HardwareAddr(dst[:])}); err != nil {
		c.Stats.WriteErrors.Add(1)
		return err
	}
	return nil
}

// Probe asks, per RFC 5227 section 2.1, whether another host uses the
// address: it sends Timing.ProbeNum ARP probes and listens from the start
// until Timing.AnnounceWait after the last. It returns nil if nobody
// answered, a *ConflictError naming the first host that did (a packet
// with the address as sender) or that probes for the address too, or the
// context's error.
func (c *Claim) Probe(ctx context.Context) error {
	if !c.reading.CompareAndSwap(false, true) {
		return fmt.Errorf("arp: probe %v on %s: a probe or serve is already reading", c.ip, c.link.Name)
	}
	defer c.reading.Store(false)
	start := time.Now()
	r := newReader(ctx, c.conn)
	defer r.close()
	buf := make([]byte, 256)
	next := start.Add(jitter(0, c.timing.ProbeWait))
	for i := 0; ; i++ {
		if err := c.listen(ctx, r, buf, next); err != nil {
			return err
		}
		if i == c.timing.ProbeNum {
			break
		}
		if err := c.send(c.probeFrame, broadcast()); err != nil {
			return fmt.Errorf("arp: probe %v on %s: %w", c.ip, c.link.Name, err)
		}
		if i < c.timing.ProbeNum-1 {
			next = time.Now().Add(jitter(c.timing.ProbeMin, c.timing.ProbeMax))
		} else {
			next = time.Now().Add(c.timing.AnnounceWait)
		}
	}
	c.log.Info("no other host answered for the address", "probes", c.timing.ProbeNum, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// listen reads until the deadline, returning a *ConflictError for the
// first conflicting packet.
func (c *Claim) listen(ctx context.Context, r *reader, buf []byte, until time.Time) error {
	if err := r.setDeadline(until); err != nil {
		return fmt.Errorf("arp: probe %v on %s: set read deadline: %w", c.ip, c.link.Name, err)
	}
	for {
		n, _, err := c.conn.ReadFrom(buf)
		if ctx.Err() != nil {
			return fmt.Errorf("arp: probe %v on %s: %w", c.ip, c.link.Name, ctx.Err())
		}
		if err != nil {
			if isTimeout(err) {
				return nil
			}
			return fmt.Errorf("arp: probe %v on %s: %w", c.ip, c.link.Name, err)
		}
		p, err := Parse(buf[:n])
		if err != nil {
			c.Stats.Malformed.Add(1)
			continue
		}
		if p.SenderMAC == c.link.MAC {
			continue // our own frame, looped back
		}
		switch {
		case p.SenderIP == c.ip:
			c.Stats.Conflicts.Add(1)
			return &ConflictError{Op: "probe", IP: c.ip, Interface: c.link.Name, MAC: p.SenderMAC}
		case p.Op == OpRequest && p.SenderIP.IsUnspecified() && p.TargetIP == c.ip:
			c.Stats.Conflicts.Add(1)
			return &ConflictError{Op: "probe", IP: c.ip, Interface: c.link.Name, MAC: p.SenderMAC, Probing: true}
		}
	}
}

// Announce sends Timing.AnnounceNum gratuitous ARP requests (RFC 5227
// section 2.3), Timing.AnnounceInterval apart, so that hosts that cached
// another MAC for the address switch to ours. It may run while Serve does.
// It returns nil once all are sent, or the context's error if it ended
// first.
func (c *Claim) Announce(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for i := range c.timing.AnnounceNum {
		if i > 0 {
			t.Reset(c.timing.AnnounceInterval)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
			}
		} else if err := ctx.Err(); err != nil {
			return err
		}
		if err := c.send(c.announceFrame, broadcast()); err != nil {
			return fmt.Errorf("arp: announce %v on %s: %w", c.ip, c.link.Name, err)
		}
	}
	c.log.Info("announced the address", "announcements", c.timing.AnnounceNum)
	return nil
}

// Serve answers every ARP request for the address with the interface's
// MAC until ctx ends or Close is called, and returns nil then. It ignores
// all other frames. A packet from another host with the address as sender
// is a conflict (RFC 5227 section 2.4): Serve logs each conflicting host
// once and defends the address with one announcement, at most one per
// Timing.DefendInterval; with DefendOnce a second conflict within that
// interval ends Serve with a *ConflictError.
//
// A read error other than a transient ENETDOWN (the interface went down;
// the socket works again once it is up) ends Serve with that error.
func (c *Claim) Serve(ctx context.Context) error {
	if !c.reading.CompareAndSwap(false, true) {
		return fmt.Errorf("arp: serve %v on %s: a probe or serve is already reading", c.ip, c.link.Name)
	}
	defer c.reading.Store(false)
	r := newReader(ctx, c.conn)
	defer r.close()
	if err := r.setDeadline(time.Time{}); err != nil {
		return fmt.Errorf("arp: serve %v on %s: clear read deadline: %w", c.ip, c.link.Name, err)
	}
	s := server{Claim: c, logged: make(map[[6]byte]bool)}
	c.log.Info("answering ARP for the address", "mac", macString(c.link.MAC))
	defer func() { c.log.Info("stopped answering ARP for the address", "replies", c.Stats.Replies.Load()) }()
	buf := make([]byte, 256)
	down := false
	for {
		n, _, err := c.conn.ReadFrom(buf)
		if ctx.Err() != nil || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
			return nil
		}
		if err != nil {
			if errors.Is(err, syscall.ENETDOWN) {
				if !down {
					c.log.Warn("interface went down; waiting for it to come back")
					down = true
				}
				continue
			}
			if isTimeout(err) {
				continue // a deadline someone else set; ours is cleared
			}
			return fmt.Errorf("arp: serve %v on %s: %w", c.ip, c.link.Name, err)
		}
		if down {
			c.log.Info("interface is receiving again")
			down = false
		}
		if err := s.handle(buf[:n], time.Now()); err != nil {
			return err
		}
	}
}

// server is Serve's state; it lives in Serve's goroutine only.
type server struct {
	*Claim
	lastDefence time.Time // zero: never defended
	logged      map[[6]byte]bool
	writeFailed bool
}

func (s *server) handle(frame []byte, now time.Time) error {
	p, err := Parse(frame)
	if err != nil {
		s.Stats.Malformed.Add(1)
		return nil
	}
	if p.SenderMAC == s.link.MAC {
		return nil // our own frame, looped back
	}
	if p.SenderIP == s.ip {
		return s.conflict(p, now)
	}
	if p.Op != OpRequest || p.TargetIP != s.ip || p.SenderMAC[0]&1 != 0 || p.SenderMAC == ([6]byte{}) {
		// Not a request for us, or one whose sender cannot take a
		// unicast reply.
		return nil
	}
	rp := reply(s.link.MAC, s.ip, p)
	b, err := rp.MarshalBinary()
	if err != nil {
		s.writeError(err)
		return nil
	}
	if err := s.send(b, p.SenderMAC); err != nil {
		s.writeError(err)
		return nil
	}
	s.writeFailed = false
	s.Stats.Replies.Add(1)
	return nil
}

func (s *server) conflict(p Packet, now time.Time) error {
	s.Stats.Conflicts.Add(1)
	if !s.logged[p.SenderMAC] && len(s.logged) < maxLoggedMACs {
		s.logged[p.SenderMAC] = true
		s.log.Error("another host claims the address: two hosts answer for it, connections to it will fail",
			"other_mac", macString(p.SenderMAC), "op", p.Op.String())
	}
	if !s.lastDefence.IsZero() && now.Sub(s.lastDefence) < s.timing.DefendInterval {
		if s.defence == DefendOnce {
			return &ConflictError{Op: "serve", IP: s.ip, Interface: s.link.Name, MAC: p.SenderMAC}
		}
		return nil // one defence per interval, so two defenders cannot loop
	}
	s.lastDefence = now
	if err := s.send(s.announceFrame, broadcast()); err != nil {
		s.writeError(err)
		return nil
	}
	s.Stats.Defences.Add(1)
	return nil
}

// writeError logs the first of a run of failed writes; the rest are
// counted in Stats.WriteErrors.
func (s *server) writeError(err error) {
	if !s.writeFailed {
		s.log.Warn("cannot send ARP", "err", err)
		s.writeFailed = true
	}
}

// reader lets a context end a blocked ReadFrom by moving the read deadline
// into the past, and keeps the loop from moving it back afterwards.
type reader struct {
	conn Conn
	mu   sync.Mutex
	done bool
	stop func() bool
}

// aLongTimeAgo is a deadline in the past: it wakes a blocked read at once.
func aLongTimeAgo() time.Time { return time.Unix(1, 0) }

func newReader(ctx context.Context, conn Conn) *reader {
	r := &reader{conn: conn}
	r.stop = context.AfterFunc(ctx, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.done = true
		_ = conn.SetReadDeadline(aLongTimeAgo())
	})
	return r
}

func (r *reader) setDeadline(t time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return nil
	}
	return r.conn.SetReadDeadline(t)
}

// close detaches the reader from its context; once it returns, the
// context's end no longer touches the deadline.
func (r *reader) close() {
	if !r.stop() {
		r.mu.Lock() // wait for a running AfterFunc to finish
		r.mu.Unlock()
	}
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// jitter returns a random duration in [lo, hi].
func jitter(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + rand.N(hi-lo+1)
}
