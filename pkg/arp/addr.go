package arp

import "net"

// Addr is a link-layer address as a net.Addr: the sender of a frame read
// from a Socket, or the destination of one written to it.
type Addr struct {
	HardwareAddr net.HardwareAddr
}

// Network returns "packet", the address family's name in Go's packet
// socket libraries.
func (a *Addr) Network() string { return "packet" }

func (a *Addr) String() string { return a.HardwareAddr.String() }
