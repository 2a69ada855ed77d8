package neigh

import (
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// neighEntry is one row of the kernel's neighbour table, reduced to what Resolve reads.
type neighEntry struct {
	ip    netip.Addr
	state uint16 // NUD_* bits
	mac   [6]byte
	// hasMAC is false when the entry carries no 6-byte link-layer address (INCOMPLETE and
	// FAILED entries carry none, or an old one).
	hasMAC bool
}

// nudValid are the states in which the kernel itself sends to the entry's address
// (NUD_VALID in include/net/neighbour.h): REACHABLE, and STALE/DELAY/PROBE, in which the
// kernel keeps using the old address while it re-verifies it. NOARP (a link without ARP) and
// PERMANENT (static) entries never change by themselves.
const nudValid = unix.NUD_PERMANENT | unix.NUD_NOARP | unix.NUD_REACHABLE | unix.NUD_PROBE |
	unix.NUD_STALE | unix.NUD_DELAY

// usableState reports whether frames may be sent to the address of an entry in state s.
// INCOMPLETE (being resolved), FAILED (no answer) and NONE (just created) may not.
func usableState(s uint16) bool {
	return s&nudValid != 0
}

func (e neighEntry) usable() bool {
	return e.hasMAC && usableState(e.state)
}

// stateString names NUD_* bits the way `ip neigh` prints them.
func stateString(s uint16) string {
	if s == unix.NUD_NONE {
		return "NONE"
	}
	names := []struct {
		bit  uint16
		name string
	}{
		{unix.NUD_INCOMPLETE, "INCOMPLETE"},
		{unix.NUD_REACHABLE, "REACHABLE"},
		{unix.NUD_STALE, "STALE"},
		{unix.NUD_DELAY, "DELAY"},
		{unix.NUD_PROBE, "PROBE"},
		{unix.NUD_FAILED, "FAILED"},
		{unix.NUD_NOARP, "NOARP"},
		{unix.NUD_PERMANENT, "PERMANENT"},
	}
	var b strings.Builder
	for _, n := range names {
		if s&n.bit != 0 {
			if b.Len() > 0 {
				b.WriteByte('|')
			}
			b.WriteString(n.name)
			s &^= n.bit
		}
	}
	if s != 0 {
		if b.Len() > 0 {
			b.WriteByte('|')
		}
		b.WriteString("0x" + strconv.FormatUint(uint64(s), 16))
	}
	return b.String()
}
