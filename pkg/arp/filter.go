package arp

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/net/bpf"
)

const (
	// packetOutgoing is PACKET_OUTGOING, the skb->pkt_type of frames this
	// host sends (linux/if_packet.h).
	packetOutgoing = 4
	// snapLen is what the filter keeps of a frame: an ARP frame padded to
	// the Ethernet minimum; nothing past it matters.
	snapLen = minFrame
)

// Filter returns the classic BPF program that passes only the ARP frames a
// claim of ip acts on: untagged Ethernet/IPv4 ARP requests and replies
// whose sender or target address is ip, not sent by this host. Every other
// frame on the link (all other ARP traffic included) stays in the kernel.
//
// Frames with a VLAN tag are refused: on an interface whose driver strips
// tags into skb metadata, a request from another VLAN would otherwise look
// untagged here and be answered on the wrong segment. Outgoing frames are
// refused here as well as by PACKET_IGNORE_OUTGOING, which kernels before
// 4.20 lack.
func Filter(ip netip.Addr) ([]bpf.Instruction, error) {
	if !ip.Is4() {
		return nil, fmt.Errorf("arp: filter for %v: not an IPv4 address", ip)
	}
	a := binary.BigEndian.Uint32(ip.AsSlice())
	reject := bpf.RetConstant{Val: 0}
	return []bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: packetOutgoing, SkipTrue: 1},
		reject,
		bpf.LoadExtension{Num: bpf.ExtVLANTagPresent},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipTrue: 1},
		reject,
		bpf.LoadAbsolute{Off: offEtherType, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherTypeARP, SkipTrue: 1},
		reject,
		bpf.LoadAbsolute{Off: offHType, Size: 4}, // hardware and protocol type
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: hwEthernet<<16 | etherTypeIP4, SkipTrue: 1},
		reject,
		bpf.LoadAbsolute{Off: offSizes, Size: 4}, // address lengths and opcode
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: sizes<<16 | uint32(OpRequest), SkipTrue: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: sizes<<16 | uint32(OpReply), SkipTrue: 1},
		reject,
		bpf.LoadAbsolute{Off: offSenderIP, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: a, SkipTrue: 3},
		bpf.LoadAbsolute{Off: offTargetIP, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: a, SkipTrue: 1},
		reject,
		bpf.RetConstant{Val: snapLen},
	}, nil
}
