package datapath

import (
	"errors"
	"net"
	"os"
)

// Handler processes a batch of frames in place: bufs[i][:sizes[i]] arrived on
// interface ifs[i]; on return sizes[i] is what to send from bufs[i] (0: drop)
// and ifs[i] where. forward.Worker is one.
type Handler interface {
	Process(bufs [][]byte, sizes []int, ifs []int)
}

// Receiver is the receive side of a lane: *RxSocket, or a fake in tests.
type Receiver interface {
	RecvBatch(bufs [][]byte, sizes []int) (int, error)
	Ifindex() int
}

// Sender is the send side of a lane: *TxSocket, or a fake in tests.
type Sender interface {
	SendBatch(bufs [][]byte, sizes []int, ifs []int) (int, error)
}

// Lane is one receive loop: it owns its buffers (allocated once, reused for
// every batch, so the loop allocates nothing) and runs on one goroutine.
type Lane struct {
	rx    Receiver
	tx    Sender
	h     Handler
	bufs  [][]byte
	sizes []int
	ifs   []int
}

// NewLane returns a lane with batch buffers of FrameBufSize bytes.
func NewLane(rx Receiver, tx Sender, h Handler, batch int) *Lane {
	if batch < 1 {
		batch = DefaultBatch
	}
	l := &Lane{rx: rx, tx: tx, h: h, bufs: make([][]byte, batch), sizes: make([]int, batch), ifs: make([]int, batch)}
	for i := range l.bufs {
		l.bufs[i] = make([]byte, FrameBufSize)
	}
	return l
}

// Run moves frames until the receiver is closed (then it returns nil) or
// fails.
func (l *Lane) Run() error {
	in := l.rx.Ifindex()
	for {
		n, err := l.rx.RecvBatch(l.bufs, l.sizes)
		if err != nil {
			if errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if n == 0 {
			continue
		}
		for i := 0; i < n; i++ {
			l.ifs[i] = in
		}
		l.h.Process(l.bufs[:n], l.sizes[:n], l.ifs[:n])
		if _, err := l.tx.SendBatch(l.bufs[:n], l.sizes[:n], l.ifs[:n]); err != nil {
			if errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
	}
}
