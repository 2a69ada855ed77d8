package capture

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

func frame(t *testing.T, src, dst string) []byte {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
	tcp := &layers.TCP{SrcPort: 1, DstPort: 2, SYN: true}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	sb := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(sb, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp); err != nil {
		t.Fatal(err)
	}
	return sb.Bytes()
}

func TestCapture(t *testing.T) {
	var buf bytes.Buffer
	w, err := New(&buf, map[int]string{2: "eth0"}, []netip.Addr{netip.MustParseAddr("198.18.0.10")}, 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if !w.Match(frame(t, "198.18.0.10", "198.18.0.100")) || w.Match(frame(t, "198.18.0.2", "198.18.0.21")) || w.Match([]byte{1, 2, 3}) {
		t.Fatal("Match")
	}
	w.Capture(true, 2, frame(t, "198.18.0.10", "198.18.0.100"))
	w.Capture(false, 2, frame(t, "198.18.0.2", "198.18.0.22")) // what it was rewritten into
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewNgReader(&buf, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		intf, _ := r.Interface(ci.InterfaceIndex)
		names = append(names, intf.Name)
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		if p.Layer(layers.LayerTypeTCP) == nil {
			t.Fatal("captured frame does not decode")
		}
	}
	if len(names) != 2 || names[0] != "rx eth0" || names[1] != "tx eth0" || w.Written.Load() != 2 {
		t.Fatalf("captured %v (written %d)", names, w.Written.Load())
	}
}
