package packet

import (
	"encoding/binary"
	"math/bits"
)

// Sum adds b to the running ones'-complement sum initial and returns the
// folded 16-bit result (not complemented). An odd trailing byte is padded with
// zero, as RFC 1071 requires. It sums 64 bits at a time with end-around carry
// (the technique of wireguard-go's tun/checksum.go and gVisor's checksum
// package), which is several times faster than a 16-bit loop on 64 KiB frames.
func Sum(b []byte, initial uint16) uint16 {
	var acc uint64 = uint64(initial)
	var carry uint64
	for len(b) >= 32 {
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[0:8]), 0)
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[8:16]), carry)
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[16:24]), carry)
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[24:32]), carry)
		acc += carry
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[:8]), 0)
		acc += carry
		b = b[8:]
	}
	if len(b) >= 4 {
		acc, carry = bits.Add64(acc, uint64(binary.BigEndian.Uint32(b[:4])), 0)
		acc += carry
		b = b[4:]
	}
	if len(b) >= 2 {
		acc, carry = bits.Add64(acc, uint64(binary.BigEndian.Uint16(b[:2])), 0)
		acc += carry
		b = b[2:]
	}
	if len(b) == 1 {
		acc, carry = bits.Add64(acc, uint64(b[0])<<8, 0)
		acc += carry
	}
	return fold64(acc)
}

// fold64 folds a 64-bit ones'-complement accumulator to 16 bits.
func fold64(acc uint64) uint16 {
	acc = (acc >> 32) + (acc & 0xffffffff)
	acc = (acc >> 32) + (acc & 0xffffffff)
	return fold32(uint32(acc>>32) + uint32(acc))
}

// fold32 folds a 32-bit accumulator of 16-bit words to 16 bits.
func fold32(acc uint32) uint16 {
	acc = (acc >> 16) + (acc & 0xffff)
	acc = (acc >> 16) + (acc & 0xffff)
	return uint16(acc)
}

// Add returns the ones'-complement sum a + b.
func Add(a, b uint16) uint16 {
	s := uint32(a) + uint32(b)
	return uint16(s) + uint16(s>>16)
}

// PseudoSum returns the folded sum of the IPv4 pseudo header for protocol
// proto and an L4 length of l4len bytes (RFC 793 section 3.1).
func PseudoSum(src, dst [4]byte, proto uint8, l4len uint16) uint16 {
	s := uint32(binary.BigEndian.Uint16(src[0:2])) + uint32(binary.BigEndian.Uint16(src[2:4])) +
		uint32(binary.BigEndian.Uint16(dst[0:2])) + uint32(binary.BigEndian.Uint16(dst[2:4])) +
		uint32(proto) + uint32(l4len)
	return fold32(s)
}

// Delta accumulates the difference between old and new 16-bit words for an
// incremental checksum update: each change contributes ~m + m' (RFC 1624).
// The zero value is "no change". Deltas of address words and of port words are
// kept apart by callers because a partial (NEEDS_CSUM) seed covers only the
// pseudo header, that is the addresses.
type Delta uint32

// Word adds the change of one 16-bit word from old to new.
func (d Delta) Word(old, new uint16) Delta {
	if old == new {
		return d
	}
	return d + Delta(^old) + Delta(new)
}

// Addr adds the change of a 4-byte address (two words).
func (d Delta) Addr(old, new [4]byte) Delta {
	if old == new {
		return d
	}
	return d.Word(binary.BigEndian.Uint16(old[0:2]), binary.BigEndian.Uint16(new[0:2])).
		Word(binary.BigEndian.Uint16(old[2:4]), binary.BigEndian.Uint16(new[2:4]))
}

// Plus merges two deltas.
func (d Delta) Plus(e Delta) Delta {
	return Delta(uint32(fold32(uint32(d))) + uint32(fold32(uint32(e))))
}

// ApplyFull applies d to a complete checksum field value (RFC 1624 eqn. 3:
// HC' = ~(~HC + ~m + m')).
func (d Delta) ApplyFull(csum uint16) uint16 {
	if d == 0 {
		return csum
	}
	return ^fold32(uint32(^csum) + uint32(fold32(uint32(d))))
}

// ApplyPartial applies d to a NEEDS_CSUM seed (the non-complemented pseudo
// header sum): seed' = seed + ~m + m'.
func (d Delta) ApplyPartial(seed uint16) uint16 {
	if d == 0 {
		return seed
	}
	return fold32(uint32(seed) + uint32(fold32(uint32(d))))
}
