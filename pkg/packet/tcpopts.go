package packet

import "encoding/binary"

// TCP option kinds (RFC 9293, RFC 7323).
const (
	tcpOptEOL       = 0
	tcpOptNOP       = 1
	tcpOptTimestamp = 8
	tcpOptTSLen     = 10
)

// TimestampOffset returns the offset, from the start of the TCP header, of
// the TSval field of the segment's timestamp option (TSecr follows it), or
// ok false when the segment carries none. It walks the options with every
// length checked, so any header is safe.
func (t TCP) TimestampOffset() (off int, ok bool) {
	end := t.DataOffset()
	if end > len(t) {
		return 0, false
	}
	for i := TCPMinLen; i < end; {
		switch t[i] {
		case tcpOptEOL:
			return 0, false
		case tcpOptNOP:
			i++
			continue
		}
		if i+1 >= end {
			return 0, false
		}
		l := int(t[i+1])
		if l < 2 || i+l > end {
			return 0, false
		}
		if t[i] == tcpOptTimestamp {
			if l != tcpOptTSLen {
				return 0, false
			}
			return i + 2, true
		}
		i += l
	}
	return 0, false
}

// TSval returns the timestamp value at off (from TimestampOffset).
func (t TCP) TSval(off int) uint32 { return binary.BigEndian.Uint32(t[off : off+4]) }

// TSecr returns the timestamp echo reply at off (from TimestampOffset).
func (t TCP) TSecr(off int) uint32 { return binary.BigEndian.Uint32(t[off+4 : off+8]) }

// SetUint32Csum writes v at byte offset off of the TCP header (an option
// field, possibly at an odd offset) and updates a complete checksum
// incrementally over the 16-bit words it touches. A NEEDS_CSUM seed covers
// only the pseudo header, so with partial true the checksum is left alone:
// the device sums the options itself.
func (t TCP) SetUint32Csum(off int, v uint32, partial bool) {
	if partial {
		binary.BigEndian.PutUint32(t[off:off+4], v)
		return
	}
	lo := off &^ 1           // first 16-bit word touched
	hi := (off + 4 + 1) &^ 1 // end of the last word touched
	if hi > len(t) {
		hi = len(t)
	}
	var d Delta
	var old [6]byte
	n := copy(old[:], t[lo:hi])
	binary.BigEndian.PutUint32(t[off:off+4], v)
	for i := 0; i+1 < n; i += 2 {
		d = d.Word(binary.BigEndian.Uint16(old[i:]), binary.BigEndian.Uint16(t[lo+i:]))
	}
	if n%2 == 1 { // the word runs past the header's end: pad with zero, as the sum does
		d = d.Word(uint16(old[n-1])<<8, uint16(t[lo+n-1])<<8)
	}
	t.SetChecksum(d.ApplyFull(t.Checksum()))
}
