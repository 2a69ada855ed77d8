package packet

import "encoding/binary"

// VnetHdr is a view of struct virtio_net_hdr (include/uapi/linux/virtio_net.h),
// which AF_PACKET puts in front of every frame when PACKET_VNET_HDR is set and
// expects in front of every frame sent. Its fields are in host byte order
// (little endian on every architecture l4raw builds for), unlike network
// headers.
type VnetHdr []byte

// VnetHdrLen is sizeof(struct virtio_net_hdr) without the num_buffers field.
const VnetHdrLen = 10

// virtio_net_hdr flags and GSO types.
const (
	VnetFlagNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM: CHECKSUM_PARTIAL
	VnetFlagDataValid = 2 // VIRTIO_NET_HDR_F_DATA_VALID: CHECKSUM_UNNECESSARY

	VnetGSONone  = 0
	VnetGSOTCPv4 = 1
	VnetGSOUDP   = 3
	VnetGSOTCPv6 = 4
	VnetGSOECN   = 0x80
)

var hostEndian = binary.NativeEndian

func (v VnetHdr) Flags() uint8        { return v[0] }
func (v VnetHdr) GSOType() uint8      { return v[1] }
func (v VnetHdr) HdrLen() uint16      { return hostEndian.Uint16(v[2:4]) }
func (v VnetHdr) GSOSize() uint16     { return hostEndian.Uint16(v[4:6]) }
func (v VnetHdr) CsumStart() uint16   { return hostEndian.Uint16(v[6:8]) }
func (v VnetHdr) CsumOffset() uint16  { return hostEndian.Uint16(v[8:10]) }
func (v VnetHdr) SetFlags(f uint8)    { v[0] = f }
func (v VnetHdr) SetGSOType(t uint8)  { v[1] = t }
func (v VnetHdr) SetHdrLen(n uint16)  { hostEndian.PutUint16(v[2:4], n) }
func (v VnetHdr) SetGSOSize(n uint16) { hostEndian.PutUint16(v[4:6], n) }
func (v VnetHdr) SetCsumStart(n uint16) {
	hostEndian.PutUint16(v[6:8], n)
}
func (v VnetHdr) SetCsumOffset(n uint16) { hostEndian.PutUint16(v[8:10], n) }

// NeedsCsum reports CHECKSUM_PARTIAL: the L4 checksum field holds only the
// pseudo-header seed.
func (v VnetHdr) NeedsCsum() bool { return v[0]&VnetFlagNeedsCsum != 0 }

// Clear makes the header say "a complete frame, no offload".
func (v VnetHdr) Clear() { clear(v[:VnetHdrLen]) }
