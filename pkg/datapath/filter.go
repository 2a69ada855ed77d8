package datapath

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/net/bpf"

	"github.com/l4raw/l4raw/pkg/packet"
)

// PortRange is l4raw's port range type.
type PortRange = packet.PortRange

// DstMatch accepts TCP segments to Addr with a destination port in Ports:
// a service (VIP and its ports) or an SNAT address and the NAT ports.
type DstMatch struct {
	Addr  netip.Addr
	Ports []PortRange
}

// SrcMatch accepts TCP segments from Addr:Port (a backend in DNAT mode,
// whose replies are addressed to the client) unless they go to one of the
// filter's Local addresses (the host's own connections to the backend, such
// as health checks).
type SrcMatch struct {
	Addr netip.AddrPort
}

// FilterSpec says which frames the data path receives. Everything else stays
// in the kernel, never copied to user space.
type FilterSpec struct {
	Dst   []DstMatch
	Src   []SrcMatch
	Local []netip.Addr
}

// Frame offsets for an untagged Ethernet frame; classic BPF on a packet
// socket sees the frame from the MAC header (the virtio-net header is not
// part of the skb's data).
const (
	offEtherType = 12
	offIPv4      = 14
	offFragment  = offIPv4 + 6
	offProto     = offIPv4 + 9
	offSrcAddr   = offIPv4 + 12
	offDstAddr   = offIPv4 + 16
	offSrcPort   = offIPv4 + 0 // relative to X = IP header length
	offDstPort   = offIPv4 + 2

	// acceptLen is the snap length a match returns: all of it (GSO frames
	// reach 64 KiB; BIG TCP more).
	acceptLen = 0x40000
	// blockMax bounds one address's block so that its conditional jumps,
	// whose offsets are 8 bits, stay in range.
	blockMax = 200
	// maxInstructions is the kernel's BPF_MAXINSNS for classic BPF.
	maxInstructions = 4096
)

// BuildFilter returns the classic BPF program for spec. It accepts only
// IPv4 TCP frames addressed to this host (PACKET_HOST: frames a promiscuous
// interface sees for others are not ours), that are not non-first fragments,
// and that match spec.
func BuildFilter(spec FilterSpec) ([]bpf.Instruction, error) {
	reject := bpf.RetConstant{Val: 0}
	accept := bpf.RetConstant{Val: acceptLen}
	p := []bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipTrue: 1}, // PACKET_HOST
		reject,
		bpf.LoadAbsolute{Off: offEtherType, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x0800, SkipTrue: 1},
		reject,
		bpf.LoadAbsolute{Off: offProto, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6, SkipTrue: 1},
		reject,
		bpf.LoadAbsolute{Off: offFragment, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipFalse: 1}, // a non-first fragment has no ports
		reject,
		bpf.LoadMemShift{Off: offIPv4}, // X = IP header length
	}
	for _, d := range spec.Dst {
		if !d.Addr.Is4() {
			return nil, fmt.Errorf("datapath: filter: %s: only IPv4 is supported", d.Addr)
		}
		a := binary.BigEndian.Uint32(d.Addr.AsSlice())
		// Split long port lists so each block stays within jump range.
		for start := 0; start < len(d.Ports); {
			var body []bpf.Instruction
			body = append(body, bpf.LoadIndirect{Off: offDstPort, Size: 2})
			for start < len(d.Ports) && len(body) < blockMax {
				r := d.Ports[start]
				start++
				if r.Lo == r.Hi {
					body = append(body, bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(r.Lo), SkipFalse: 1}, accept)
					continue
				}
				body = append(body,
					bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: uint32(r.Lo), SkipFalse: 2},
					bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: uint32(r.Hi), SkipTrue: 1},
					accept)
			}
			p = append(p, bpf.LoadAbsolute{Off: offDstAddr, Size: 4},
				bpf.JumpIf{Cond: bpf.JumpEqual, Val: a, SkipFalse: uint8(len(body))})
			p = append(p, body...)
		}
	}
	if len(spec.Src) > 0 {
		// The tail shared by every source match: refuse frames to a local
		// address, accept the rest.
		var tail []bpf.Instruction
		if len(spec.Local) > 0 {
			tail = append(tail, bpf.LoadAbsolute{Off: offDstAddr, Size: 4})
			for _, l := range spec.Local {
				if !l.Is4() {
					continue
				}
				tail = append(tail, bpf.JumpIf{Cond: bpf.JumpEqual, Val: binary.BigEndian.Uint32(l.AsSlice()), SkipFalse: 1}, reject)
			}
		}
		tail = append(tail, accept)
		if len(tail) > blockMax {
			return nil, fmt.Errorf("datapath: filter: too many local addresses (%d)", len(spec.Local))
		}
		for _, s := range spec.Src {
			if !s.Addr.Addr().Is4() {
				return nil, fmt.Errorf("datapath: filter: %s: only IPv4 is supported", s.Addr)
			}
			a := binary.BigEndian.Uint32(s.Addr.Addr().AsSlice())
			body := []bpf.Instruction{
				bpf.LoadIndirect{Off: offSrcPort, Size: 2},
				bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(s.Addr.Port()), SkipFalse: uint8(len(tail))},
			}
			body = append(body, tail...)
			p = append(p, bpf.LoadAbsolute{Off: offSrcAddr, Size: 4},
				bpf.JumpIf{Cond: bpf.JumpEqual, Val: a, SkipFalse: uint8(len(body))})
			p = append(p, body...)
		}
	}
	p = append(p, reject)
	if len(p) > maxInstructions {
		return nil, fmt.Errorf("datapath: filter: %d instructions, the kernel takes %d: too many services", len(p), maxInstructions)
	}
	return p, nil
}
