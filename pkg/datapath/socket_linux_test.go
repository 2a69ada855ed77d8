//go:build linux

package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/l4raw/l4raw/pkg/packet"
)

// inNetns creates a network namespace for the test, runs setup commands in
// it (ip subcommands), and returns a function that runs fn with the calling goroutine's
// thread switched into it (sockets keep the namespace they were made in).
func inNetns(t *testing.T, setup ...string) func(fn func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN, CAP_NET_RAW) for network namespaces and packet sockets")
	}
	name := fmt.Sprintf("l4t-dp-%d", rand.IntN(1<<30))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	for _, c := range setup {
		args := append([]string{"netns", "exec", name, "ip"}, strings.Fields(c)...)
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", c, err, out)
		}
	}
	return func(fn func()) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			t.Fatal(err)
		}
		defer orig.Close()
		ns, err := os.Open("/run/netns/" + name)
		if err != nil {
			t.Fatal(err)
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
				panic(err) // a thread left in the wrong namespace must not be reused
			}
		}()
		fn()
	}
}

// rawTCP builds a TCP/IPv4 frame with a virtio-net header by hand.
func rawTCP(dstMAC net.HardwareAddr, src, dst netip.AddrPort, payload int, gso bool) []byte {
	b := make([]byte, packet.VnetHdrLen+packet.EthernetLen+20+20+payload)
	eth := packet.Ethernet(b[packet.VnetHdrLen:])
	eth.SetDst([6]byte(dstMAC))
	eth.SetSrc([6]byte{2, 0, 0, 0, 0, 1})
	eth.SetEtherType(packet.EtherTypeIPv4)
	ip := packet.IPv4(eth[packet.EthernetLen:])
	ip[0] = 0x45
	ip.SetTotalLen(uint16(40 + payload))
	binary.BigEndian.PutUint16(ip[6:8], 0x4000)
	ip.SetTTL(64)
	ip[9] = packet.ProtocolTCP
	ip.SetSrc(src.Addr().As4())
	ip.SetDst(dst.Addr().As4())
	ip.SetChecksum(ip.CalculateChecksum())
	tcp := packet.TCP(ip[20:])
	tcp.SetSrcPort(src.Port())
	tcp.SetDstPort(dst.Port())
	tcp.SetDataOffset(20)
	tcp.SetFlags(packet.TCPFlagACK)
	tcp.SetWindow(1000)
	v := packet.VnetHdr(b)
	if gso {
		tcp.SetChecksum(packet.PseudoSum(src.Addr().As4(), dst.Addr().As4(), packet.ProtocolTCP, uint16(len(tcp))))
		v.SetFlags(packet.VnetFlagNeedsCsum)
		v.SetGSOType(packet.VnetGSOTCPv4)
		v.SetGSOSize(1448)
		v.SetHdrLen(uint16(packet.EthernetLen + 40))
		v.SetCsumStart(packet.EthernetLen + 20)
		v.SetCsumOffset(packet.TCPChecksumOffset)
	} else {
		tcp.SetChecksum(tcp.CalculateChecksum(src.Addr().As4(), dst.Addr().As4()))
	}
	return b
}

// TestSockets sends frames on one end of a veth pair and receives them on
// the other through the filter: a matching frame, a refused one, and a
// 60 KB GSO frame that must arrive whole with its virtio-net header.
func TestSockets(t *testing.T) {
	run := inNetns(t, "link add va type veth peer name vb", "link set va up", "link set vb up", "link set lo up")
	run(func() {
		va, err := net.InterfaceByName("va")
		if err != nil {
			t.Fatal(err)
		}
		vb, err := net.InterfaceByName("vb")
		if err != nil {
			t.Fatal(err)
		}
		prog, err := BuildFilter(FilterSpec{Dst: []DstMatch{{Addr: netip.MustParseAddr("198.18.9.2"), Ports: []PortRange{{Lo: 80, Hi: 80}}}}})
		if err != nil {
			t.Fatal(err)
		}
		rx, err := ListenRx(vb.Index, prog, Options{FanoutID: 77})
		if err != nil {
			t.Fatal(err)
		}
		defer rx.Close()
		tx, err := ListenTx()
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Close()

		cli, svc := netip.MustParseAddrPort("198.18.9.1:40000"), netip.MustParseAddrPort("198.18.9.2:80")
		frames := [][]byte{
			rawTCP(vb.HardwareAddr, cli, svc, 100, false),
			rawTCP(vb.HardwareAddr, cli, netip.MustParseAddrPort("198.18.9.2:81"), 100, false), // filtered out
			rawTCP(vb.HardwareAddr, cli, svc, 60000, true),
		}
		sizes := []int{len(frames[0]), len(frames[1]), len(frames[2])}
		ifs := []int{va.Index, va.Index, va.Index}
		if n, err := tx.SendBatch(frames, sizes, ifs); err != nil || n != 3 {
			t.Fatalf("sent %d: %v (refused %d)", n, err, tx.Errors.Load())
		}

		bufs := [][]byte{make([]byte, FrameBufSize), make([]byte, FrameBufSize), make([]byte, FrameBufSize), make([]byte, FrameBufSize)}
		got := make([]int, len(bufs))
		var lens []int
		deadline := time.AfterFunc(5*time.Second, func() { rx.Close() })
		defer deadline.Stop()
		for len(lens) < 2 {
			n, err := rx.RecvBatch(bufs, got)
			if err != nil {
				t.Fatalf("recv: %v (got %v)", err, lens)
			}
			for i := 0; i < n; i++ {
				lens = append(lens, got[i])
				var f packet.Frame
				if r := f.Parse(bufs[i][:got[i]], true); r != packet.OK {
					t.Fatalf("received frame does not parse: %v", r)
				}
				if f.TCP.DstPort() != 80 {
					t.Fatalf("filter let port %d through", f.TCP.DstPort())
				}
				if len(f.Payload()) == 60000 && (f.Vnet.GSOType() != packet.VnetGSOTCPv4 || !f.Vnet.NeedsCsum() || f.Vnet.GSOSize() != 1448) {
					t.Fatalf("GSO frame lost its virtio-net header: %x", []byte(f.Vnet))
				}
			}
		}
		if lens[0] != len(frames[0]) || lens[1] != len(frames[2]) {
			t.Fatalf("received lengths %v, want %d and %d", lens, len(frames[0]), len(frames[2]))
		}
		if pk, drops, err := rx.KernelStats(); err != nil || pk < 2 || drops != 0 {
			t.Fatalf("kernel stats %d %d %v", pk, drops, err)
		}
	})
}

// TestCloseEndsRecv: closing a receive socket ends a RecvBatch waiting on it
// with net.ErrClosed, which is how lanes stop.
func TestCloseEndsRecv(t *testing.T) {
	run := inNetns(t, "link add va type veth peer name vb", "link set va up", "link set vb up")
	run(func() {
		vb, err := net.InterfaceByName("vb")
		if err != nil {
			t.Fatal(err)
		}
		prog, _ := BuildFilter(FilterSpec{Dst: []DstMatch{{Addr: netip.MustParseAddr("198.18.9.2"), Ports: []PortRange{{Lo: 80, Hi: 80}}}}})
		rx, err := ListenRx(vb.Index, prog, Options{})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := rx.RecvBatch([][]byte{make([]byte, FrameBufSize)}, []int{0})
			done <- err
		}()
		time.Sleep(50 * time.Millisecond)
		rx.Close()
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("RecvBatch after Close: %v, want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("RecvBatch did not return after Close")
		}
	})
}
