// Package arptest provides a fake arp.Conn: frames pushed by the test are
// read by the code under test, frames it writes are recorded, read
// deadlines and Close behave as on a socket. No privileges, no kernel.
package arptest

import (
	"context"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/l4raw/l4raw/pkg/arp"
)

// Sent is one frame written to a Conn.
type Sent struct {
	Frame []byte
	To    net.Addr
}

// Conn is a channel-backed arp.Conn. Its zero value is not usable: call
// NewConn.
type Conn struct {
	mu       sync.Mutex
	in       [][]byte
	sent     []Sent
	deadline time.Time
	closed   bool
	// wake is closed and replaced whenever a reader must look again: a
	// frame was pushed, the deadline moved, the Conn closed or a frame
	// was sent (for Next).
	wake chan struct{}
	// OnSend, if set before use, is called (without locks held) with every
	// frame written, after it is recorded; it may Push an answer.
	OnSend func(c *Conn, frame []byte)
}

var _ arp.Conn = (*Conn)(nil)

// NewConn returns an open Conn with nothing to read.
func NewConn() *Conn { return &Conn{wake: make(chan struct{})} }

func (c *Conn) wakeLocked() {
	close(c.wake)
	c.wake = make(chan struct{})
}

// Push queues frame for ReadFrom.
func (c *Conn) Push(frame []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.in = append(c.in, slices.Clone(frame))
	c.wakeLocked()
}

// ReadFrom returns the next pushed frame, waiting for one until the read
// deadline (os.ErrDeadlineExceeded) or Close (net.ErrClosed).
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return 0, nil, &net.OpError{Op: "read", Net: "fake", Err: net.ErrClosed}
		}
		if !c.deadline.IsZero() && !time.Now().Before(c.deadline) {
			c.mu.Unlock()
			return 0, nil, os.ErrDeadlineExceeded
		}
		if len(c.in) > 0 {
			f := c.in[0]
			c.in = c.in[1:]
			c.mu.Unlock()
			n := copy(b, f)
			var from net.Addr
			if len(f) >= 12 {
				from = &arp.Addr{HardwareAddr: net.HardwareAddr(slices.Clone(f[6:12]))}
			}
			return n, from, nil
		}
		wake, deadline := c.wake, c.deadline
		c.mu.Unlock()
		if deadline.IsZero() {
			<-wake
			continue
		}
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// WriteTo records b.
func (c *Conn) WriteTo(b []byte, to net.Addr) (int, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, &net.OpError{Op: "write", Net: "fake", Err: net.ErrClosed}
	}
	f := slices.Clone(b)
	c.sent = append(c.sent, Sent{Frame: f, To: to})
	c.wakeLocked()
	hook := c.OnSend
	c.mu.Unlock()
	if hook != nil {
		hook(c, f)
	}
	return len(b), nil
}

// SetReadDeadline sets the deadline for ReadFrom, waking a waiting reader.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	c.wakeLocked()
	return nil
}

// Close makes every ReadFrom and WriteTo fail with net.ErrClosed.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return &net.OpError{Op: "close", Net: "fake", Err: net.ErrClosed}
	}
	c.closed = true
	c.wakeLocked()
	return nil
}

// Sent returns the frames written so far.
func (c *Conn) Sent() []Sent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sent)
}

// WaitSent waits until at least n frames were written and returns them
// all, or returns what there is when ctx ends.
func (c *Conn) WaitSent(ctx context.Context, n int) ([]Sent, error) {
	for {
		c.mu.Lock()
		if len(c.sent) >= n {
			s := slices.Clone(c.sent)
			c.mu.Unlock()
			return s, nil
		}
		wake := c.wake
		c.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return c.Sent(), ctx.Err()
		}
	}
}
