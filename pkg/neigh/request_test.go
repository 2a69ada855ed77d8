package neigh

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
)

// ne is the host byte order netlink uses.
var ne = binary.NativeEndian

func littleEndian() bool { return ne.Uint16([]byte{1, 0}) == 1 }

func TestUseRequestBytes(t *testing.T) {
	if !littleEndian() {
		t.Skip("golden bytes are little-endian, as on every l4raw target (amd64, arm64, arm)")
	}
	tests := []struct {
		name    string
		ifindex int
		ip      netip.Addr
		// want is the message after the 16-byte header (ndmsg + attributes), little-endian.
		want []byte
	}{
		{
			// `ip neigh replace 198.18.3.2 dev va use` (iproute2 6.1, va = ifindex 3); the
			// buffer it passed to sendmsg(2) was 24000000 1c00 0505 <seq> 00000000 |
			// 02 00 0000 03000000 8000 01 00 | 0800 0100 c6120302.
			name:    "ipv4",
			ifindex: 3,
			ip:      netip.MustParseAddr("198.18.3.2"),
			want: []byte{
				0x02, 0x00, 0x00, 0x00, // ndm_family AF_INET, pad1, pad2
				0x03, 0x00, 0x00, 0x00, // ndm_ifindex 3
				0x80, 0x00, // ndm_state NUD_PERMANENT
				0x01,                   // ndm_flags NTF_USE
				0x00,                   // ndm_type RTN_UNSPEC
				0x08, 0x00, 0x01, 0x00, // nla_len 8, nla_type NDA_DST
				198, 18, 3, 2,
			},
		},
		{
			// `ip neigh replace 198.18.3.2 dev va use` again, the address written IPv4-mapped:
			// the kernel wants a 4-byte NDA_DST for AF_INET.
			name:    "ipv4-mapped",
			ifindex: 3,
			ip:      netip.MustParseAddr("::ffff:198.18.3.2"),
			want: []byte{
				0x02, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x80, 0x00, 0x01, 0x00,
				0x08, 0x00, 0x01, 0x00, 198, 18, 3, 2,
			},
		},
		{
			// `ip neigh replace 2001:db8::2 dev eth7 use` (eth7 = ifindex 7): the same with
			// AF_INET6 and a 16-byte NDA_DST.
			name:    "ipv6",
			ifindex: 7,
			ip:      netip.MustParseAddr("2001:db8::2"),
			want: []byte{
				0x0a, 0x00, 0x00, 0x00, // AF_INET6
				0x07, 0x00, 0x00, 0x00,
				0x80, 0x00, 0x01, 0x00,
				0x14, 0x00, 0x01, 0x00, // nla_len 20, NDA_DST
				0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []byte
			c := nltest.Dial(nltest.CheckRequest(
				[]netlink.HeaderType{unix.RTM_NEWNEIGH},
				[]netlink.HeaderFlags{netlink.Request | netlink.Acknowledge | netlink.Create | netlink.Replace},
				func(req []netlink.Message) ([]netlink.Message, error) {
					b, err := req[0].MarshalBinary()
					if err != nil {
						return nil, err
					}
					got = b
					return nltest.Error(0, req) // an ack
				}))
			defer c.Close()
			if err := sendUse(c, tt.ifindex, tt.ip); err != nil {
				t.Fatalf("sendUse: %v", err)
			}

			want := []byte{
				0, 0, 0, 0, // nlmsg_len
				0x1c, 0x00, // RTM_NEWNEIGH
				0x05, 0x05, // NLM_F_REQUEST|NLM_F_ACK|NLM_F_REPLACE|NLM_F_CREATE
				0, 0, 0, 0, 0, 0, 0, 0, // sequence and port id: the connection's
			}
			ne.PutUint32(want[0:4], uint32(16+len(tt.want)))
			if len(got) >= 16 {
				copy(want[8:16], got[8:16])
			}
			want = append(want, tt.want...)
			if !bytes.Equal(got, want) {
				t.Errorf("request bytes\n got % x\nwant % x", got, want)
			}
		})
	}
}

func TestUseRequestKernelError(t *testing.T) {
	c := nltest.Dial(func(req []netlink.Message) ([]netlink.Message, error) {
		return nltest.Error(int(unix.EINVAL), req)
	})
	defer c.Close()
	err := sendUse(c, 3, netip.MustParseAddr("198.18.3.2"))
	if !errors.Is(err, unix.EINVAL) {
		t.Fatalf("sendUse error = %v, want EINVAL", err)
	}
}

func TestUseRequestInvalid(t *testing.T) {
	tests := []struct {
		name    string
		ifindex int
		ip      netip.Addr
	}{
		{"zero address", 3, netip.Addr{}},
		{"zero index", 0, netip.MustParseAddr("198.18.3.2")},
		{"negative index", -1, netip.MustParseAddr("198.18.3.2")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := useRequest(tt.ifindex, tt.ip); err == nil {
				t.Fatal("useRequest succeeded, want error")
			}
		})
	}
}

// FuzzUseRequest checks that any index and address give a message whose ndmsg and single
// NDA_DST attribute decode back to the inputs.
func FuzzUseRequest(f *testing.F) {
	f.Add(int32(3), []byte{198, 18, 3, 2})
	f.Add(int32(7), netip.MustParseAddr("2001:db8::2").AsSlice())
	f.Add(int32(1), netip.MustParseAddr("::ffff:198.18.0.1").AsSlice())
	f.Add(int32(0), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, ifindex int32, raw []byte) {
		ip, ok := netip.AddrFromSlice(raw)
		m, err := useRequest(int(ifindex), ip)
		if !ok || ifindex <= 0 {
			if err == nil {
				t.Fatalf("useRequest(%d, % x) succeeded", ifindex, raw)
			}
			return
		}
		if err != nil {
			t.Fatalf("useRequest(%d, %s): %v", ifindex, ip, err)
		}
		ip = ip.Unmap()
		d := m.Data
		if len(d) < sizeofNdmsg {
			t.Fatalf("short message % x", d)
		}
		if int(d[0]) != family(ip) || int32(ne.Uint32(d[4:8])) != ifindex ||
			ne.Uint16(d[8:10]) != unix.NUD_PERMANENT || d[10] != unix.NTF_USE || d[11] != 0 {
			t.Fatalf("ndmsg % x for %d %s", d[:sizeofNdmsg], ifindex, ip)
		}
		attrs, err := netlink.UnmarshalAttributes(d[sizeofNdmsg:])
		if err != nil {
			t.Fatalf("attributes: %v", err)
		}
		if len(attrs) != 1 || attrs[0].Type != unix.NDA_DST || !bytes.Equal(attrs[0].Data, ip.AsSlice()) {
			t.Fatalf("attributes %+v, want only NDA_DST %s", attrs, ip)
		}
	})
}
