package apitest

import (
	"context"
	"net"
	"net/http"
	"sync"
	"syscall"
)

// PipeListener is a net.Listener whose connections are in-memory pipes
// made by its Dial method, so an API server and its clients can be tested
// without sockets. The address clients give is ignored.
type PipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

var _ net.Listener = (*PipeListener)(nil)

// NewPipeListener returns an open PipeListener.
func NewPipeListener() *PipeListener {
	return &PipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

// Accept implements net.Listener.
func (l *PipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener; later dials are refused like a closed port.
func (l *PipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr implements net.Listener.
func (l *PipeListener) Addr() net.Addr { return pipeAddr{} }

// Dial connects to the listener. Once it is closed, Dial fails the way a
// TCP dial to a closed port does: a *net.OpError "dial" wrapping
// ECONNREFUSED.
func (l *PipeListener) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	refused := &net.OpError{Op: "dial", Net: "pipe", Err: syscall.ECONNREFUSED}
	select {
	case <-l.done:
		return nil, refused
	default:
	}
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		client.Close()
		server.Close()
		return nil, refused
	case <-ctx.Done():
		client.Close()
		server.Close()
		return nil, &net.OpError{Op: "dial", Net: "pipe", Err: ctx.Err()}
	}
}

// HTTPClient returns an http.Client whose connections all go to l.
func (l *PipeListener) HTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: l.Dial}}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "apitest-pipe" }
