//go:build e2e

package e2e

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// TestPcap: --pcap writes the frames of the matching flows, as they arrive
// and as they leave, to a pcapng file Wireshark can read.
func TestPcap(t *testing.T) {
	file := filepath.Join(t.TempDir(), "l4raw.pcapng")
	lan, _, b := lanBalancer(t, 2, "--pcap", file, "--pcap-match", "198.18.0.10")
	if s := lan.Client.EchoGet(t, vipURL(lan.VIP), 4, 1); s.OK != 4 {
		t.Fatalf("%+v", s)
	}
	b.stop(t)
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		intf, _ := r.Interface(ci.InterfaceIndex)
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if ip == nil || tcp == nil {
			t.Fatalf("frame on %s does not decode as TCP/IPv4", intf.Name)
		}
		src, _ := netip.AddrFromSlice(ip.SrcIP)
		dst, _ := netip.AddrFromSlice(ip.DstIP)
		switch {
		case intf.Name == "rx eth0" && src == lan.ClientIP && dst == lan.VIP:
			seen["client to VIP"]++
		case intf.Name == "tx eth0" && src == lan.LBIP && (dst == lan.BackendIPs[0] || dst == lan.BackendIPs[1]):
			seen["balancer to backend"]++
		case intf.Name == "tx eth0" && src == lan.VIP && dst == lan.ClientIP:
			seen["VIP to client"]++
		case intf.Name == "rx eth0" && (src == lan.BackendIPs[0] || src == lan.BackendIPs[1]) && dst == lan.LBIP:
			seen["backend to balancer"]++
		}
	}
	for _, k := range []string{"client to VIP", "balancer to backend", "backend to balancer", "VIP to client"} {
		if seen[k] < 4 {
			t.Errorf("%s: %d frames, want at least one per connection (4); all: %v", k, seen[k], seen)
		}
	}
}
