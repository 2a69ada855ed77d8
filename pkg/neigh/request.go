package neigh

import (
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nlenc"
	"golang.org/x/sys/unix"
)

// sizeofNdmsg is struct ndmsg (include/uapi/linux/neighbour.h): family u8, two pad fields (u8,
// u16), ifindex s32, state u16, flags u8, type u8.
const sizeofNdmsg = 12

// useFlags are the header flags iproute2 sends for `ip neigh replace`.
const useFlags = netlink.Request | netlink.Acknowledge | netlink.Create | netlink.Replace

// useRequest builds the message of `ip neigh replace IP dev IF use`: RTM_NEWNEIGH with
// ndm_flags NTF_USE and only NDA_DST. For NTF_USE the kernel (neigh_add in
// net/core/neighbour.c) creates the entry if needed and treats the request like a packet
// waiting for it (neigh_event_send): an absent, NONE or FAILED entry becomes INCOMPLETE and is
// probed at once, a STALE one goes to DELAY and gets re-verified, a usable one only has its
// "used" time refreshed. The state it carries is not applied; it only marks an entry the
// request creates as exempt from the gc_thresh accounting (the periodic collector still
// removes it once FAILED or unused). It is NUD_PERMANENT because that is iproute2's default
// and this is the byte sequence measured to work.
// vishvananda/netlink's NeighSet cannot send it: it always adds an empty NDA_LLADDR, which the
// kernel rejects with EINVAL.
func useRequest(ifindex int, ip netip.Addr) (netlink.Message, error) {
	ip = canon(ip)
	if !ip.IsValid() {
		return netlink.Message{}, fmt.Errorf("invalid address %v", ip)
	}
	if ifindex <= 0 || int64(ifindex) > 1<<31-1 {
		return netlink.Message{}, fmt.Errorf("invalid interface index %d", ifindex)
	}
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NDA_DST, Data: ip.AsSlice()}})
	if err != nil {
		return netlink.Message{}, fmt.Errorf("encode %s: %w", ip, err)
	}
	b := make([]byte, sizeofNdmsg, sizeofNdmsg+len(attrs))
	b[0] = byte(family(ip))
	nlenc.PutInt32(b[4:8], int32(ifindex))
	nlenc.PutUint16(b[8:10], unix.NUD_PERMANENT)
	b[10] = unix.NTF_USE
	// b[11], ndm_type: RTN_UNSPEC.
	return netlink.Message{
		Header: netlink.Header{Type: unix.RTM_NEWNEIGH, Flags: useFlags},
		Data:   append(b, attrs...),
	}, nil
}

// sendUse sends the NTF_USE request on c and waits for the kernel's acknowledgement.
func sendUse(c *netlink.Conn, ifindex int, ip netip.Addr) error {
	m, err := useRequest(ifindex, ip)
	if err != nil {
		return err
	}
	if _, err := c.Execute(m); err != nil {
		return err
	}
	return nil
}
