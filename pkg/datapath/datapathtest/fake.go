// Package datapathtest provides channel-backed stand-ins for the data path's
// sockets, so that parse, connection tracking, NAT and rewrite run under a
// plain `go test`, without privileges.
package datapathtest

import (
	"net"
	"sync"

	"github.com/l4raw/l4raw/pkg/datapath"
)

// Frame is a frame in flight: its bytes (virtio-net header first) and the
// interface it arrives on or leaves by.
type Frame struct {
	Data    []byte
	Ifindex int
}

// Rx is a receiver fed through a channel.
type Rx struct {
	C       chan []byte // frames to deliver
	ifindex int
	once    sync.Once
	done    chan struct{}
}

var _ datapath.Receiver = (*Rx)(nil)

// NewRx returns a receiver for interface ifindex.
func NewRx(ifindex int) *Rx {
	return &Rx{C: make(chan []byte, 64), ifindex: ifindex, done: make(chan struct{})}
}

// Ifindex implements datapath.Receiver.
func (r *Rx) Ifindex() int { return r.ifindex }

// Close makes RecvBatch return net.ErrClosed.
func (r *Rx) Close() { r.once.Do(func() { close(r.done) }) }

// RecvBatch implements datapath.Receiver: it waits for one frame, then takes
// whatever else is queued, up to len(bufs).
func (r *Rx) RecvBatch(bufs [][]byte, sizes []int) (int, error) {
	n := 0
	select {
	case <-r.done:
		return 0, net.ErrClosed
	case b := <-r.C:
		sizes[n] = copy(bufs[n], b)
		n++
	}
	for n < len(bufs) {
		select {
		case b := <-r.C:
			sizes[n] = copy(bufs[n], b)
			n++
		default:
			return n, nil
		}
	}
	return n, nil
}

// Tx is a sender whose frames go to a channel.
type Tx struct {
	C chan Frame
}

var _ datapath.Sender = (*Tx)(nil)

// NewTx returns a sender with a buffered channel.
func NewTx() *Tx { return &Tx{C: make(chan Frame, 1024)} }

// SendBatch implements datapath.Sender: it copies every frame to send.
func (t *Tx) SendBatch(bufs [][]byte, sizes []int, ifs []int) (int, error) {
	n := 0
	for i := range bufs {
		if sizes[i] > 0 {
			t.C <- Frame{Data: append([]byte(nil), bufs[i][:sizes[i]]...), Ifindex: ifs[i]}
			n++
		}
	}
	return n, nil
}
