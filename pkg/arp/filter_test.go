package arp

import (
	"net/netip"
	"testing"

	"golang.org/x/net/bpf"
)

// runFilter runs prog on frame in x/net/bpf's VM. The VM knows no kernel
// extensions, so each LoadExtension is replaced by a constant load of the
// value the kernel would give for this frame.
func runFilter(t *testing.T, prog []bpf.Instruction, frame []byte, pktType, vlanPresent uint32) int {
	t.Helper()
	sim := make([]bpf.Instruction, len(prog))
	for i, ins := range prog {
		sim[i] = ins
		if ext, ok := ins.(bpf.LoadExtension); ok {
			switch ext.Num {
			case bpf.ExtType:
				sim[i] = bpf.LoadConstant{Dst: bpf.RegA, Val: pktType}
			case bpf.ExtVLANTagPresent:
				sim[i] = bpf.LoadConstant{Dst: bpf.RegA, Val: vlanPresent}
			default:
				t.Fatalf("instruction %d: extension %d has no simulation", i, ext.Num)
			}
		}
	}
	vm, err := bpf.NewVM(sim)
	if err != nil {
		t.Fatal(err)
	}
	n, err := vm.Run(frame)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestFilter(t *testing.T) {
	const (
		host      = 0 // PACKET_HOST
		bcast     = 1 // PACKET_BROADCAST
		otherhost = 3 // PACKET_OTHERHOST
	)
	mk := func(p Packet) []byte {
		b, err := p.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	reqFor := func(target netip.Addr) Packet {
		return Packet{EthDst: bcastMAC, EthSrc: otherMAC, Op: OpRequest, SenderMAC: otherMAC, SenderIP: otherIP, TargetIP: target}
	}
	unrelated := netip.MustParseAddr("198.18.5.7")
	withOp := func(b []byte, op byte) []byte { b[offOp+1] = op; return b }
	withByte := func(b []byte, off int, v byte) []byte { b[off] = v; return b }
	tests := []struct {
		name    string
		frame   []byte
		pktType uint32
		vlan    uint32
		want    bool
	}{
		{"request for the address", mk(reqFor(testVIP)), bcast, 0, true},
		{"probe for the address", mk(probe(otherMAC, testVIP)), bcast, 0, true},
		{"reply from the address (a conflict)", mk(reply(otherMAC, testVIP, reqFor(otherIP))), host, 0, true},
		{"announcement of the address by another host", mk(announcement(otherMAC, testVIP)), bcast, 0, true},
		{"reply between others seen promiscuously", mk(reply(otherMAC, testVIP, reqFor(otherIP))), otherhost, 0, true},
		{"unpadded request", mk(reqFor(testVIP))[:FrameLen], bcast, 0, true},
		{"request for another address", mk(reqFor(unrelated)), bcast, 0, false},
		{"announcement of another address", mk(announcement(otherMAC, unrelated)), bcast, 0, false},
		{"our own request going out", mk(reqFor(testVIP)), packetOutgoing, 0, false},
		{"request with a stripped VLAN tag", mk(reqFor(testVIP)), bcast, 1, false},
		{"RARP operation", withOp(mk(reqFor(testVIP)), 3), bcast, 0, false},
		{"not ARP", withByte(mk(reqFor(testVIP)), offEtherType+1, 0x00), bcast, 0, false},
		{"hardware type not Ethernet", withByte(mk(reqFor(testVIP)), offHType+1, 6), bcast, 0, false},
		{"protocol not IPv4", withByte(mk(reqFor(testVIP)), offPType, 0x86), bcast, 0, false},
		{"hardware length 8", withByte(mk(reqFor(testVIP)), offSizes, 8), bcast, 0, false},
		{"truncated before the target address", mk(reqFor(testVIP))[:offTargetIP+2], bcast, 0, false},
		{"empty", nil, bcast, 0, false},
	}
	prog, err := Filter(testVIP)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := runFilter(t, prog, tt.frame, tt.pktType, tt.vlan)
			if got := n > 0; got != tt.want {
				t.Fatalf("filter kept %d bytes, want accepted=%v", n, tt.want)
			}
			// The kernel keeps min(frame length, this) bytes.
			if tt.want && n != snapLen {
				t.Fatalf("filter returned snap length %d, want %d", n, snapLen)
			}
		})
	}
}

func TestFilterAssembles(t *testing.T) {
	prog, err := Filter(testVIP)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bpf.Assemble(prog); err != nil {
		t.Fatal(err)
	}
	if _, err := Filter(netip.MustParseAddr("2001:db8::1")); err == nil {
		t.Fatal("Filter accepted an IPv6 address")
	}
}
