// Package nat allocates the source ports that full NAT puts on the
// balancer's side of a connection.
//
// A NAT port must be unique per (SNAT address, backend address and port): that
// pair is what the backend's replies are matched by. The harder requirement
// is timing. When the backend closes a connection first, it keeps the tuple in
// TIME_WAIT for 60 s (Linux TCP_TIMEWAIT_LEN). A new SYN on the same tuple
// from a different client carries TCP timestamps from another clock, fails
// the backend's PAWS check and stalls for a second or more; iptables DNAT +
// MASQUERADE does exactly this to about 2 % of short connections (measured,
// see the project's data-path notes). So a Pool
//
//   - hands out ports in the order they were released, oldest first, never
//     used ones before all others;
//   - keeps a port whose connection the backend closed first in quarantine
//     for Quarantine after its last packet;
//   - lets a quarantined port go at once to the same client address that
//     used it last: Linux derives the timestamp offset from the address pair,
//     so that client's timestamps are newer and the backend accepts the SYN;
//   - only when neither is available, takes the oldest quarantined port
//     (counted by the caller), rather than refusing the connection.
//
// A port stays in use while its connection lingers in the table after both
// FINs (or a RST), so at a high rate of short connections the lingering
// entries, not the live ones, would exhaust the pool. The caller marks such
// ports with Linger; when nothing is free, Lingering names one whose entry
// the caller may end early to take its place: first one this client used
// (its timestamps are newer), then one whose connection the client closed
// (the backend holds no TIME_WAIT), and only then one the backend closed
// first (counted as early reuse).
package nat

import (
	"errors"
	"hash/maphash"
	"sync"
	"time"

	"github.com/l4raw/l4raw/pkg/packet"
)

// Quarantine is how long a port stays unused after a connection that the
// backend closed first: Linux's TIME_WAIT length (TCP_TIMEWAIT_LEN, 60 s)
// plus a second of margin.
const Quarantine = 61 * time.Second

// PortRange is l4raw's port range type.
type PortRange = packet.PortRange

// ErrExhausted means every port of a pool is in use.
var ErrExhausted = errors.New("nat: all ports in use")

const (
	none         = 0xffff // list end; a range never has 65535 ports (ports >= 1)
	clientLists  = 64     // per-pool buckets of ports by last client
	clientSearch = 16     // entries looked at in a bucket before giving up
	stFree       = 0
	stInUse      = 1
	stLinger     = 2 // in use by a connection that has ended and lingers
)

type list struct{ head, tail uint16 }

// Pool allocates ports of one range for one (SNAT address, backend) pair.
// Methods are safe for concurrent use; each call is O(1).
type Pool struct {
	mu         sync.Mutex
	r          PortRange
	quarantine uint32 // ms
	seed       maphash.Seed
	inUse      int

	// Per port, indexed by port - r.Lo.
	state  []uint8
	relAt  []uint32 // table-clock ms of the last packet of its last connection, if quarantined
	quar   []bool   // released from a connection the backend closed first
	client []uint32 // hash of the last client address
	gprev  []uint16 // release-order lists of free ports: ready or quarantined
	gnext  []uint16
	cprev  []uint16 // per-client-bucket lists of free ports
	cnext  []uint16
	cbkt   []uint8

	ready    list              // never used, or released from a connection the client closed
	quarList list              // released from a connection the backend closed first, oldest first
	byClient [clientLists]list // quarantined ports by the bucket of their last client

	// TCP timestamps of the connections on each port, on the caller's
	// clock (see StartTS): where the current one started and when, and the
	// least value the next one may start at.
	tsStart, tsAt, tsMin []uint32
	tsSet                []bool

	lingerSafe     list              // lingering, the client closed first (or a RST): no TIME_WAIT at the backend
	lingerTW       list              // lingering, the backend closed first
	lingerByClient [clientLists]list // lingering ports by the bucket of their client
	lingerTWOf     []bool            // which linger list a lingering port is on
	lingerAt       []uint32          // when a port started lingering
}

// NewPool returns a pool of the ports in r with the given quarantine.
func NewPool(r PortRange, quarantine time.Duration) *Pool {
	n := r.Len()
	p := &Pool{
		r: r, quarantine: uint32(quarantine.Milliseconds()), seed: maphash.MakeSeed(),
		state: make([]uint8, n), relAt: make([]uint32, n), quar: make([]bool, n), client: make([]uint32, n),
		gprev: make([]uint16, n), gnext: make([]uint16, n), cprev: make([]uint16, n), cnext: make([]uint16, n), cbkt: make([]uint8, n),
		ready: list{none, none}, quarList: list{none, none},
		lingerSafe: list{none, none}, lingerTW: list{none, none}, lingerTWOf: make([]bool, n), lingerAt: make([]uint32, n),
		tsStart: make([]uint32, n), tsAt: make([]uint32, n), tsMin: make([]uint32, n), tsSet: make([]bool, n),
	}
	for i := range p.byClient {
		p.byClient[i] = list{none, none}
		p.lingerByClient[i] = list{none, none}
	}
	for i := 0; i < n; i++ {
		p.push(&p.ready, p.gprev, p.gnext, uint16(i))
		p.cprev[i], p.cnext[i], p.cbkt[i] = none, none, 0xff
	}
	return p
}

// Range returns the pool's port range.
func (p *Pool) Range() PortRange { return p.r }

// InUse returns the number of ports handed out.
func (p *Pool) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inUse
}

func (p *Pool) hash(client [16]byte) uint32 { return uint32(maphash.Comparable(p.seed, client)) }

// Get returns a port for a new connection from client at table-clock time
// now. early reports that the port is still in quarantine for another
// client: the caller counts it.
func (p *Pool) Get(client [16]byte, now uint32) (port uint16, early bool, err error) {
	h := p.hash(client)
	p.mu.Lock()
	defer p.mu.Unlock()
	i := p.quarList.head
	switch {
	case i != none && int32(now-p.relAt[i]) >= int32(p.quarantine):
		// The oldest quarantined port has served its time.
	case p.ready.head != none:
		i = p.ready.head
	case i == none:
		return 0, false, ErrExhausted
	default:
		// Only quarantined ports are left: one this client used last is safe.
		k := p.byClient[h%clientLists].head
		for n := 0; k != none && n < clientSearch && p.client[k] != h; n++ {
			k = p.cnext[k]
		}
		if k != none && p.client[k] == h {
			i = k
		} else {
			early = true
		}
	}
	p.take(i)
	p.client[i] = h
	return p.r.Lo + i, early, nil
}

// Put returns port, last used by client, whose connection's last packet was
// at table-clock time lastSeen. quarantine says the backend closed first and
// so may hold the tuple in TIME_WAIT. A port outside the range or not in use
// is ignored.
func (p *Pool) Put(port uint16, client [16]byte, lastSeen uint32, quarantine bool) {
	if port < p.r.Lo || port > p.r.Hi {
		return
	}
	h := p.hash(client)
	i := port - p.r.Lo
	p.mu.Lock()
	defer p.mu.Unlock()
	switch p.state[i] {
	case stLinger:
		p.unlinger(i)
	case stInUse:
	default:
		return
	}
	p.state[i] = stFree
	p.inUse--
	if p.tsSet[i] {
		// The connection's last timestamp toward the backend was at most
		// its start plus one tick a millisecond (RFC 7323's fastest clock)
		// since, plus a tick for the clocks' phases.
		p.tsMin[i] = p.tsStart[i] + (lastSeen - p.tsAt[i]) + 2
	}
	p.client[i], p.relAt[i], p.quar[i] = h, lastSeen, quarantine
	if !quarantine {
		p.push(&p.ready, p.gprev, p.gnext, i)
	} else {
		p.push(&p.quarList, p.gprev, p.gnext, i)
		b := uint8(h % clientLists)
		p.cbkt[i] = b
		p.push(&p.byClient[b], p.cprev, p.cnext, i)
	}
}

// Reserve marks port as in use (a connection handed over from another
// process). It reports false if the port is outside the range or taken.
func (p *Pool) Reserve(port uint16, client [16]byte) bool {
	if port < p.r.Lo || port > p.r.Hi {
		return false
	}
	i := port - p.r.Lo
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state[i] != stFree {
		return false
	}
	p.take(i)
	p.client[i] = p.hash(client)
	return true
}

// StartTS returns the first TCP timestamp value the new connection on port
// may use toward the backend: want (the caller's clock), or more if the
// port's previous connection may have ended above it, since a backend in
// TIME_WAIT accepts the next SYN on the port only with a newer timestamp
// (PAWS). now is the caller's table clock in milliseconds, as given to Put.
func (p *Pool) StartTS(port uint16, want, now uint32) uint32 {
	if port < p.r.Lo || port > p.r.Hi {
		return want
	}
	i := port - p.r.Lo
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tsSet[i] && int32(p.tsMin[i]-want) > 0 {
		want = p.tsMin[i]
	}
	p.tsStart[i], p.tsAt[i], p.tsSet[i] = want, now, true
	return want
}

// Linger marks port, in use by client's connection, as held by a
// connection that has ended and lingers in the table. backendClosedFirst
// says the backend keeps the tuple in TIME_WAIT.
func (p *Pool) Linger(port uint16, client [16]byte, backendClosedFirst bool, now uint32) {
	if port < p.r.Lo || port > p.r.Hi {
		return
	}
	h := p.hash(client)
	i := port - p.r.Lo
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state[i] != stInUse {
		return
	}
	p.state[i] = stLinger
	p.client[i] = h
	p.lingerAt[i] = now
	p.lingerTWOf[i] = backendClosedFirst
	if backendClosedFirst {
		p.push(&p.lingerTW, p.gprev, p.gnext, i)
	} else {
		p.push(&p.lingerSafe, p.gprev, p.gnext, i)
	}
	b := uint8(h % clientLists)
	p.cbkt[i] = b
	p.push(&p.lingerByClient[b], p.cprev, p.cnext, i)
}

// MinLinger is how long a port lingers before Lingering offers it: the
// connection's last segments (the final ACK, a FIN handled by another
// worker) must have crossed before a new SYN on the port follows them.
const MinLinger = 100 // ms

// Lingering returns a lingering port whose entry the caller may end to
// reuse the port for client, when Get found none free: one client used
// last, else the oldest whose backend holds no TIME_WAIT, else the oldest
// (early: the backend may still hold the tuple in TIME_WAIT); each only
// once it has lingered MinLinger. The port stays lingering until the
// caller's removal of the entry Puts it back.
func (p *Pool) Lingering(client [16]byte, now uint32) (port uint16, early, ok bool) {
	h := p.hash(client)
	p.mu.Lock()
	defer p.mu.Unlock()
	old := func(i uint16) bool { return i != none && int32(now-p.lingerAt[i]) >= MinLinger }
	k := p.lingerByClient[h%clientLists].head
	for n := 0; k != none && n < clientSearch && !(p.client[k] == h && old(k)); n++ {
		k = p.cnext[k]
	}
	switch {
	case k != none && p.client[k] == h && old(k):
		return p.r.Lo + k, false, true
	case old(p.lingerSafe.head):
		return p.r.Lo + p.lingerSafe.head, false, true
	case old(p.lingerTW.head):
		return p.r.Lo + p.lingerTW.head, true, true
	}
	return 0, false, false
}

// Passed moves a lingering port that the caller could not take (its entry
// was going at that very moment) behind the others, so the next Lingering
// offers another.
func (p *Pool) Passed(port uint16) {
	if port < p.r.Lo || port > p.r.Hi {
		return
	}
	i := port - p.r.Lo
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state[i] != stLinger {
		return
	}
	l := &p.lingerSafe
	if p.lingerTWOf[i] {
		l = &p.lingerTW
	}
	p.unlink(l, p.gprev, p.gnext, i)
	p.push(l, p.gprev, p.gnext, i)
	if b := p.cbkt[i]; b != 0xff {
		p.unlink(&p.lingerByClient[b], p.cprev, p.cnext, i)
		p.push(&p.lingerByClient[b], p.cprev, p.cnext, i)
	}
}

func (p *Pool) unlinger(i uint16) {
	if p.lingerTWOf[i] {
		p.unlink(&p.lingerTW, p.gprev, p.gnext, i)
	} else {
		p.unlink(&p.lingerSafe, p.gprev, p.gnext, i)
	}
	if b := p.cbkt[i]; b != 0xff {
		p.unlink(&p.lingerByClient[b], p.cprev, p.cnext, i)
		p.cbkt[i] = 0xff
	}
}

func (p *Pool) take(i uint16) {
	if p.quar[i] {
		p.unlink(&p.quarList, p.gprev, p.gnext, i)
	} else {
		p.unlink(&p.ready, p.gprev, p.gnext, i)
	}
	p.quar[i] = false
	if b := p.cbkt[i]; b != 0xff {
		p.unlink(&p.byClient[b], p.cprev, p.cnext, i)
		p.cbkt[i] = 0xff
	}
	p.state[i] = stInUse
	p.inUse++
}

func (p *Pool) push(l *list, prev, next []uint16, i uint16) {
	prev[i], next[i] = l.tail, none
	if l.tail != none {
		next[l.tail] = i
	} else {
		l.head = i
	}
	l.tail = i
}

func (p *Pool) unlink(l *list, prev, next []uint16, i uint16) {
	if prev[i] != none {
		next[prev[i]] = next[i]
	} else {
		l.head = next[i]
	}
	if next[i] != none {
		prev[next[i]] = prev[i]
	} else {
		l.tail = prev[i]
	}
	prev[i], next[i] = none, none
}
