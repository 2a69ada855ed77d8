// Package conntrack is l4raw's connection table: it maps each connection's
// client-side tuple and its backend-side tuple to one entry, tracks the TCP
// state of the connection, and expires idle entries.
//
// Design (after gVisor's pkg/tcpip/stack/conntrack.go, sized for millions of
// flows):
//
//   - Entries live in a slab of fixed-size, pointer-free structs addressed by
//     a uint32 index, allocated in chunks as the table grows, so the garbage
//     collector never scans them and a flow costs about 128 bytes (measured
//     by BenchmarkMemoryPerFlow).
//   - Two chained hash indexes, one per direction, share one array of
//     read-write locks ("stripes"). A packet takes the read lock of the
//     stripe of its own direction's bucket; inserts and removals take the
//     write locks of both buckets' stripes, lower index first. So the two
//     directions of a flow can be handled by different workers at once (a
//     flow's directions hash to different PACKET_FANOUT sockets), and an
//     entry cannot be freed while a packet holds either of its locks.
//   - The per-packet mutable state (TCP state, last-seen time) is atomic, so
//     lookups never take a write lock.
//   - Expiry needs no scan: every entry is filed in a hashed timing wheel
//     (4096 slots of 1.024 s, so 70 minutes ahead; farther deadlines are
//     filed at the horizon and filed again when it comes) under the tick at
//     which its state's timeout would end if no packet came. The sweep visits
//     only the slots whose tick has come: an entry idle past its timeout is
//     removed, one that was seen since is filed again under its new
//     deadline. A state change that shortens the deadline (a FIN, a RST)
//     refiles the entry at once; one that lengthens it (SYN to established)
//     is left to the sweep, so most packets never take the wheel's lock.
//     Entries leave at most one tick after their deadline, never before.
//   - The table is bounded: when it holds MaxConns entries, Insert fails with
//     Full and established flows are unaffected.
package conntrack

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// Addr is an address as the table stores it: 16 bytes, IPv4 as an
// IPv4-mapped IPv6 address, so IPv6 fits without a new key type. An array,
// not a netip.Addr, keeps entries pointer-free.
type Addr [16]byte

// AddrFrom4 returns the IPv4-mapped form of a.
func AddrFrom4(a [4]byte) Addr {
	return Addr{10: 0xff, 11: 0xff, 12: a[0], 13: a[1], 14: a[2], 15: a[3]}
}

// As4 returns the IPv4 address of an IPv4-mapped Addr.
func (a Addr) As4() [4]byte { return [4]byte{a[12], a[13], a[14], a[15]} }

// Tuple identifies one direction of a connection as its packets carry it.
type Tuple struct {
	Src, Dst         Addr
	SrcPort, DstPort uint16
	Proto            uint8
}

// Flow is a copy of an entry, handed out by lookups; changing it changes
// nothing in the table.
type Flow struct {
	Orig      Tuple   // as the client's packets carry it: client -> VIP
	Reply     Tuple   // as the backend's packets carry it: backend -> SNAT address (or client in DNAT mode)
	Backend   uint32  // the caller's backend identifier
	Service   uint16  // the caller's service identifier
	ClientMAC [6]byte // the source MAC of the client's first frame: where replies go
	IfSlot    uint8   // the caller's interface slot the client's frames arrive on
	State     State
	Prev      State  // from Track: the state before this segment (a change shows a transition)
	Seen      uint32 // milliseconds since the table's epoch of the last packet
	// BackendClosedFirst: the backend sent the first FIN, so it keeps the
	// tuple in TIME_WAIT after the connection ends (the NAT port's
	// quarantine depends on it).
	BackendClosedFirst bool
	// Reset: MarkReset chose this connection; the caller answers its
	// segments with RSTs until it expires.
	Reset bool
	// Timestamps: the connection uses TCP timestamps, which the caller
	// rewrites toward the backend by adding TSOff to the client's TSval
	// (and subtracting it from TSecr on the way back).
	Timestamps bool
	TSOff      uint32
}

// Timeouts are the idle timeouts per TCP state class.
type Timeouts struct {
	SYN, Established, FIN, TimeWait, Close time.Duration
}

type class uint8

const (
	classSYN class = iota
	classEstablished
	classFIN
	classTimeWait
	classClose
	numClasses
)

// Timing wheel geometry. A tick is 1024 ms: the millisecond clock shifted, so
// ticks wrap together with it (2^22 ticks in 2^32 ms) and the wheel size
// divides the tick space.
const (
	tickShift = 10
	tickBits  = 32 - tickShift
	tickMask  = 1<<tickBits - 1
	wheelBits = 12
	wheelSize = 1 << wheelBits
	notFiled  = 0xffffffff // taken off the wheel by the sweeper
)

func tickOf(ms uint32) uint32 { return ms >> tickShift }

// tickBefore reports a < b on the tick ring.
func tickBefore(a, b uint32) bool {
	d := (b - a) & tickMask
	return d != 0 && d < 1<<(tickBits-1)
}

func classOf(s State) class {
	switch s {
	case Established:
		return classEstablished
	case FinWait, CloseWait:
		return classFIN
	case TimeWait:
		return classTimeWait
	case Close:
		return classClose
	default:
		return classSYN
	}
}

// entry is a slab slot. Tuples, backend, service, MAC and slot are written
// only while the slot is off every index, so readers holding a stripe lock of
// a linked entry see them stable. word and seen change under read locks.
type entry struct {
	orig, reply  Tuple
	mac          [6]byte
	service      uint16
	nextO, nextR uint32 // hash chains (slot index; 0 ends); nextO also links the free list
	prev, next   uint32 // wheel slot list, guarded by wheelMu
	due          uint32 // wheel tick it is filed under, or notFiled; guarded by wheelMu
	backend      uint32
	tsOff        uint32 // added to the client's TCP timestamps toward the backend (see Flow.TSOff)
	seen         atomic.Uint32
	word         atomic.Uint32 // generation<<16 | ifslot<<8 | flags | State: the generation changes when the slot is freed
}

const (
	chunkShift = 14 // 16384 entries, about 2 MB, per allocation
	chunkSize  = 1 << chunkShift
	// MaxEntries bounds MaxConns: slot indices are uint32 with 0 meaning none.
	MaxEntries = 1 << 26
	maxStripes = 1024 // enough that workers on different flows almost never meet
	genShift   = 16   // see entry.word

	stateMask       = 0x0f
	backendFINFirst = 0x10 // the backend sent the first FIN: it will hold TIME_WAIT
	resetFlag       = 0x20 // MarkReset: answer both sides with RSTs
	tsFlag          = 0x40 // the connection uses TCP timestamps
)

type chunk [chunkSize]entry

// stripe is a lock padded to a cache line so that neighbouring stripes do not
// share one.
type stripe struct {
	sync.RWMutex
	_ [64 - 24]byte
}

// Config configures a Table.
type Config struct {
	MaxConns int
	Timeouts Timeouts
	// OnRemove, if set, is called once for every entry that leaves the table
	// (expired or replaced), after it is unlinked and with no table lock
	// held: the place to release its NAT port and decrement counters.
	OnRemove func(f Flow)
}

// Table is the connection table. All methods are safe for concurrent use.
type Table struct {
	seed    maphash.Seed
	mask    uint32
	smask   uint32
	headsO  []uint32
	headsR  []uint32
	stripes []stripe
	chunks  []*chunk
	max     uint32

	freeMu    sync.Mutex
	freeHead  uint32
	nextFresh uint32 // next never-used slot index (1-based)

	count atomic.Int64

	wheelMu  sync.Mutex
	wheel    [wheelSize]struct{ head, tail uint32 }
	cursor   uint32                    // next tick the sweep processes
	timeouts [numClasses]atomic.Uint32 // milliseconds

	onRemove func(Flow)
	epoch    time.Time
}

// New returns an empty table for at most cfg.MaxConns entries. Index memory
// (8 bytes per possible entry) is allocated now; entry memory as entries are
// used.
func New(cfg Config) *Table {
	max := cfg.MaxConns
	if max < 1 {
		max = 1
	}
	if max > MaxEntries {
		max = MaxEntries
	}
	// Buckets: the power of two at or above half the capacity, so a full
	// table has chains of about two (Linux conntrack's default allows four:
	// nf_conntrack_max = 4 x buckets) and the index costs 4 bytes a flow.
	nb := uint32(1024)
	for int(nb)*2 < max {
		nb <<= 1
	}
	ns := uint32(maxStripes)
	t := &Table{
		seed:     maphash.MakeSeed(),
		mask:     nb - 1,
		smask:    ns - 1,
		headsO:   make([]uint32, nb),
		headsR:   make([]uint32, nb),
		stripes:  make([]stripe, ns),
		chunks:   make([]*chunk, (max+chunkSize)/chunkSize+1),
		max:      uint32(max),
		onRemove: cfg.OnRemove,
		epoch:    time.Now(),
	}
	t.SetTimeouts(cfg.Timeouts)
	return t
}

// SetTimeouts changes the timeouts; it may be called at any time.
func (t *Table) SetTimeouts(to Timeouts) {
	for c, d := range [numClasses]time.Duration{to.SYN, to.Established, to.FIN, to.TimeWait, to.Close} {
		ms := d.Milliseconds()
		if ms <= 0 {
			ms = 1
		}
		if ms > 1<<31-1 {
			ms = 1<<31 - 1
		}
		t.timeouts[c].Store(uint32(ms))
	}
}

// Now returns the table's clock: milliseconds since its epoch, wrapping after
// 49 days (all comparisons are wrap-safe). Workers read it once per batch.
func (t *Table) Now() uint32 { return uint32(time.Since(t.epoch).Milliseconds()) }

// Time converts a table clock value back to wall time.
func (t *Table) Time(ms uint32) time.Time {
	d := int32(ms - t.Now())
	return time.Now().Add(time.Duration(d) * time.Millisecond)
}

// Len returns the number of entries.
func (t *Table) Len() int { return int(t.count.Load()) }

// Cap returns the maximum number of entries.
func (t *Table) Cap() int { return int(t.max) }

func (t *Table) at(i uint32) *entry { return &t.chunks[i>>chunkShift][i&(chunkSize-1)] }

func (t *Table) bucket(k *Tuple) uint32 { return uint32(maphash.Comparable(t.seed, *k)) & t.mask }

// Result is the outcome of Track.
type Result uint8

// Track results.
const (
	Miss     Result = iota // no entry for this tuple
	Hit                    // found; the state was advanced and out filled in
	Reopened               // a SYN for a closed connection: the old entry was removed, treat as a new connection
)

// Track finds the entry of a segment with tuple k travelling in direction d,
// advances its TCP state by the segment's flags, refreshes its last-seen time
// and copies it to out. A bare SYN from the client on a connection that has
// ended (TIME_WAIT or CLOSE) removes the old entry and returns Reopened, so
// the caller schedules it as a new connection.
func (t *Table) Track(k *Tuple, d Dir, flags uint8, now uint32, out *Flow) Result {
	b := t.bucket(k)
	st := &t.stripes[b&t.smask]
	st.RLock()
	var i uint32
	var e *entry
	if d == Orig {
		for i = t.headsO[b]; i != 0; i = e.nextO {
			if e = t.at(i); e.orig == *k {
				break
			}
		}
	} else {
		for i = t.headsR[b]; i != 0; i = e.nextR {
			if e = t.at(i); e.reply == *k {
				break
			}
		}
	}
	if i == 0 {
		st.RUnlock()
		return Miss
	}
	var w uint32
	var old, ns State
	for {
		w = e.word.Load()
		old = State(w & stateMask)
		if d == Orig && flags&(flagSYN|flagACK|flagRST) == flagSYN && old.Closing() {
			// Copy what remove needs while the entry is pinned by our lock.
			ob, rb := b, t.bucket(&e.reply)
			st.RUnlock()
			t.remove(i, w>>genShift, ob, rb)
			return Reopened
		}
		ns = Next(old, flags, d)
		if w&resetFlag != 0 {
			ns = Close
		}
		nw := w&^stateMask | uint32(ns)
		if ns == CloseWait && old != CloseWait {
			nw |= backendFINFirst
		}
		if ns == old || e.word.CompareAndSwap(w, nw) {
			break
		}
	}
	if e.seen.Load() != now {
		e.seen.Store(now)
	}
	if ns != old && classOf(ns) != classOf(old) {
		due := t.dueTick(now, ns)
		t.wheelMu.Lock()
		if e.due != notFiled && tickBefore(due, e.due) {
			t.unfile(i, e)
			t.file(i, e, due)
		}
		t.wheelMu.Unlock()
	}
	t.copyOut(e, out)
	out.State, out.Prev = ns, old
	st.RUnlock()
	return Hit
}

func (t *Table) copyOut(e *entry, out *Flow) {
	out.Orig, out.Reply = e.orig, e.reply
	out.Backend, out.Service, out.TSOff = e.backend, e.service, e.tsOff
	w := e.word.Load()
	out.ClientMAC, out.IfSlot = e.mac, uint8(w>>8)
	out.State = State(w & stateMask)
	out.Prev = out.State
	out.BackendClosedFirst = w&backendFINFirst != 0
	out.Reset = w&resetFlag != 0
	out.Timestamps = w&tsFlag != 0
	out.Seen = e.seen.Load()
}

// InsertResult is the outcome of Insert.
type InsertResult uint8

// Insert results.
const (
	Inserted  InsertResult = iota
	Exists                 // an entry for f.Orig exists: f now holds it (a retransmitted SYN raced its first copy)
	Collision              // an entry for f.Reply exists: pick another NAT port
	Full                   // the table holds MaxConns entries
)

// Insert adds a connection in state SYN_SENT.
func (t *Table) Insert(f *Flow, now uint32) InsertResult {
	i := t.alloc()
	if i == 0 {
		return Full
	}
	e := t.at(i)
	e.orig, e.reply = f.Orig, f.Reply
	e.backend, e.service, e.mac, e.tsOff = f.Backend, f.Service, f.ClientMAC, f.TSOff
	e.nextO, e.nextR, e.due = 0, 0, notFiled
	e.seen.Store(now)
	gen := e.word.Load() >> genShift
	w := gen<<genShift | uint32(f.IfSlot)<<8 | uint32(SynSent)
	if f.Timestamps {
		w |= tsFlag
	}
	e.word.Store(w)

	ob, rb := t.bucket(&f.Orig), t.bucket(&f.Reply)
	t.lock2w(ob, rb)
	var j uint32
	for j = t.headsO[ob]; j != 0; j = t.at(j).nextO {
		if t.at(j).orig == f.Orig {
			t.copyOut(t.at(j), f)
			t.unlock2(ob, rb)
			t.release(i, e)
			return Exists
		}
	}
	for j = t.headsR[rb]; j != 0; j = t.at(j).nextR {
		if t.at(j).reply == f.Reply {
			t.unlock2(ob, rb)
			t.release(i, e)
			return Collision
		}
	}
	e.nextO, t.headsO[ob] = t.headsO[ob], i
	e.nextR, t.headsR[rb] = t.headsR[rb], i
	due := t.dueTick(now, SynSent)
	t.wheelMu.Lock()
	t.file(i, e, due)
	t.wheelMu.Unlock()
	t.unlock2(ob, rb)
	t.count.Add(1)
	f.State, f.Seen = SynSent, now
	return Inserted
}

func (t *Table) unlock2(b1, b2 uint32) {
	s1, s2 := b1&t.smask, b2&t.smask
	t.stripes[s1].Unlock()
	if s1 != s2 {
		t.stripes[s2].Unlock()
	}
}

// lock2w write-locks the stripes of two buckets, lower stripe first (the
// order every writer uses, so two writers never deadlock).
func (t *Table) lock2w(b1, b2 uint32) {
	s1, s2 := b1&t.smask, b2&t.smask
	if s1 > s2 {
		s1, s2 = s2, s1
	}
	t.stripes[s1].Lock()
	if s1 != s2 {
		t.stripes[s2].Lock()
	}
}

// alloc takes a free slot, or returns 0 when the table is full.
func (t *Table) alloc() uint32 {
	t.freeMu.Lock()
	defer t.freeMu.Unlock()
	if i := t.freeHead; i != 0 {
		t.freeHead = t.at(i).nextO
		return i
	}
	if t.nextFresh == 0 {
		t.nextFresh = 1
	}
	if t.nextFresh > t.max {
		return 0
	}
	i := t.nextFresh
	if c := i >> chunkShift; t.chunks[c] == nil {
		t.chunks[c] = new(chunk)
	}
	t.nextFresh++
	return i
}

// release returns a slot that never made it into the indexes.
func (t *Table) release(i uint32, e *entry) {
	e.word.Store((e.word.Load()>>genShift + 1) << genShift)
	t.pushFree(i, e)
}

func (t *Table) pushFree(i uint32, e *entry) {
	t.freeMu.Lock()
	e.nextO, t.freeHead = t.freeHead, i
	t.freeMu.Unlock()
}

// remove deletes slot i if it still holds generation gen. ob and rb are the
// buckets of its tuples, computed by the caller while the entry was pinned.
func (t *Table) remove(i, gen, ob, rb uint32) bool {
	t.lock2w(ob, rb)
	e := t.at(i)
	if e.word.Load()>>genShift != gen {
		t.unlock2(ob, rb)
		return false
	}
	var f Flow
	t.unlinkLocked(i, e, ob, rb, &f)
	t.unlock2(ob, rb)
	t.finish(i, e, &f)
	return true
}

// unlinkLocked takes entry i off both hash chains and its class list. The
// caller holds the write locks of both stripes.
func (t *Table) unlinkLocked(i uint32, e *entry, ob, rb uint32, f *Flow) {
	p := &t.headsO[ob]
	for *p != i && *p != 0 {
		p = &t.at(*p).nextO
	}
	if *p == i {
		*p = e.nextO
	}
	p = &t.headsR[rb]
	for *p != i && *p != 0 {
		p = &t.at(*p).nextR
	}
	if *p == i {
		*p = e.nextR
	}
	t.wheelMu.Lock()
	if e.due != notFiled {
		t.unfile(i, e)
	}
	t.wheelMu.Unlock()
	t.copyOut(e, f)
	// A new generation while the locks are still held: anyone who found
	// this entry earlier and waits for the locks to remove it sees the change
	// and leaves it alone.
	e.word.Store((e.word.Load()>>genShift + 1) << genShift)
}

// finish frees a slot unlinkLocked took out and reports it.
func (t *Table) finish(i uint32, e *entry, f *Flow) {
	t.count.Add(-1)
	t.pushFree(i, e)
	if t.onRemove != nil {
		t.onRemove(*f)
	}
}

// dueTick returns the tick after which an entry last seen at ms in state st
// has been idle past its timeout.
func (t *Table) dueTick(ms uint32, st State) uint32 {
	return (tickOf(ms+t.timeouts[classOf(st)].Load()) + 1) & tickMask
}

// file puts entry i under tick due, clamped to the wheel's horizon: never
// before the cursor (the sweep has passed it) and less than a full turn ahead.
// The caller holds wheelMu.
func (t *Table) file(i uint32, e *entry, due uint32) {
	switch d := (due - t.cursor) & tickMask; {
	case d >= 1<<(tickBits-1):
		due = t.cursor
	case d >= wheelSize:
		due = (t.cursor + wheelSize - 1) & tickMask
	}
	l := &t.wheel[due&(wheelSize-1)]
	e.due, e.prev, e.next = due, l.tail, 0
	if l.tail != 0 {
		t.at(l.tail).next = i
	} else {
		l.head = i
	}
	l.tail = i
}

func (t *Table) unfile(i uint32, e *entry) {
	l := &t.wheel[e.due&(wheelSize-1)]
	if e.prev != 0 {
		t.at(e.prev).next = e.next
	} else {
		l.head = e.next
	}
	if e.next != 0 {
		t.at(e.next).prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.due, e.prev, e.next = notFiled, 0, 0
}

// Expire removes entries idle past their state's timeout and returns how many
// it removed. It examines no more than budget entries and resumes where it
// stopped on the next call, so a caller that runs it often (every 100 ms)
// bounds each pause.
func (t *Table) Expire(now uint32, budget int) int {
	removed := 0
	nowTick := tickOf(now)
	for budget > 0 {
		t.wheelMu.Lock()
		if tickBefore(nowTick, t.cursor) {
			t.wheelMu.Unlock()
			break
		}
		cur := t.cursor
		i := t.wheel[cur&(wheelSize-1)].head
		if i == 0 {
			t.cursor = (cur + 1) & tickMask
			t.wheelMu.Unlock()
			continue
		}
		budget--
		e := t.at(i)
		t.unfile(i, e)
		gen := e.word.Load() >> genShift
		ob, rb := t.bucket(&e.orig), t.bucket(&e.reply)
		t.wheelMu.Unlock()

		t.lock2w(ob, rb)
		if e.word.Load()>>genShift != gen {
			t.unlock2(ob, rb) // removed meanwhile by someone else
			continue
		}
		st, seen := State(e.word.Load()&stateMask), e.seen.Load()
		if int32(now-seen) < int32(t.timeouts[classOf(st)].Load()) {
			due := t.dueTick(seen, st)
			t.wheelMu.Lock()
			if !tickBefore(t.cursor, due) { // never the slot being swept
				due = (t.cursor + 1) & tickMask
			}
			t.file(i, e, due)
			t.wheelMu.Unlock()
			t.unlock2(ob, rb)
			continue
		}
		var f Flow
		t.unlinkLocked(i, e, ob, rb, &f)
		t.unlock2(ob, rb)
		t.finish(i, e, &f)
		removed++
	}
	return removed
}

// Lookup copies the entry of tuple k in direction d to out without changing
// it.
func (t *Table) Lookup(k *Tuple, d Dir, out *Flow) bool {
	b := t.bucket(k)
	st := &t.stripes[b&t.smask]
	st.RLock()
	defer st.RUnlock()
	if d == Orig {
		for i := t.headsO[b]; i != 0; i = t.at(i).nextO {
			if e := t.at(i); e.orig == *k {
				t.copyOut(e, out)
				return true
			}
		}
		return false
	}
	for i := t.headsR[b]; i != 0; i = t.at(i).nextR {
		if e := t.at(i); e.reply == *k {
			t.copyOut(e, out)
			return true
		}
	}
	return false
}

// Delete removes the entry of tuple k in direction d (Orig: the client
// tuple; Reply: the backend-side tuple), if any.
func (t *Table) Delete(k *Tuple, d Dir) bool {
	b := t.bucket(k)
	st := &t.stripes[b&t.smask]
	st.RLock()
	if d == Orig {
		for i := t.headsO[b]; i != 0; i = t.at(i).nextO {
			if e := t.at(i); e.orig == *k {
				gen, rb := e.word.Load()>>genShift, t.bucket(&e.reply)
				st.RUnlock()
				return t.remove(i, gen, b, rb)
			}
		}
	} else {
		for i := t.headsR[b]; i != 0; i = t.at(i).nextR {
			if e := t.at(i); e.reply == *k {
				gen, ob := e.word.Load()>>genShift, t.bucket(&e.orig)
				st.RUnlock()
				return t.remove(i, gen, ob, b)
			}
		}
	}
	st.RUnlock()
	return false
}

// MarkReset marks every entry for which match returns true: from then on
// Track reports Reset and moves it to CLOSE, so the caller can answer both
// sides with RSTs instead of letting the connection hang (a backend taken
// out of service with the "reset" policy). It returns how many it marked.
func (t *Table) MarkReset(match func(f *Flow) bool) int {
	n := 0
	var f Flow
	for b := range t.headsO {
		st := &t.stripes[uint32(b)&t.smask]
		st.RLock()
		for i := t.headsO[b]; i != 0; i = t.at(i).nextO {
			e := t.at(i)
			t.copyOut(e, &f)
			if f.Reset || !match(&f) {
				continue
			}
			for {
				w := e.word.Load()
				if e.word.CompareAndSwap(w, w|resetFlag) {
					break
				}
			}
			n++
		}
		st.RUnlock()
	}
	return n
}

// Walk calls fn with a copy of every entry until fn returns false. It locks
// one bucket at a time, so it sees a consistent entry but not a consistent
// table, and never stops the data path for long.
func (t *Table) Walk(fn func(f *Flow) bool) {
	var buf [16]Flow
	for b := range t.headsO {
		st := &t.stripes[uint32(b)&t.smask]
		st.RLock()
		n := 0
		for i := t.headsO[b]; i != 0 && n < len(buf); i = t.at(i).nextO {
			t.copyOut(t.at(i), &buf[n])
			n++
		}
		// A chain longer than buf (rare at load factor <= 1) is finished
		// under the lock, one at a time.
		overflow := n == len(buf)
		st.RUnlock()
		for k := 0; k < n; k++ {
			if !fn(&buf[k]) {
				return
			}
		}
		if overflow {
			st.RLock()
			var rest []Flow
			k := 0
			for i := t.headsO[b]; i != 0; i = t.at(i).nextO {
				if k >= len(buf) {
					var f Flow
					t.copyOut(t.at(i), &f)
					rest = append(rest, f)
				}
				k++
			}
			st.RUnlock()
			for k := range rest {
				if !fn(&rest[k]) {
					return
				}
			}
		}
	}
}
