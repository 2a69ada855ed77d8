package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// proxy is the typical Go layer-4 proxy (gobetween and friends): accept,
// dial the next backend round robin, and io.Copy both ways. Between two
// *net.TCPConn io.Copy uses splice(2) on Linux, so this is the standard
// library's best case, not a strawman. A half-close is passed on (FIN for
// FIN), so a server that closes first is seen closing by the client.
type proxy struct {
	backends []string
	dial     func(ctx context.Context, addr string) (net.Conn, error)
	log      *slog.Logger

	next       atomic.Uint64
	accepted   atomic.Uint64
	dialFailed atomic.Uint64
	active     atomic.Int64
}

// proxyDialTimeout bounds the connect to a backend (HAProxy's "timeout
// connect" is commonly 5 s).
const proxyDialTimeout = 5 * time.Second

func newProxy(backends []string, dial func(ctx context.Context, addr string) (net.Conn, error), log *slog.Logger) *proxy {
	return &proxy{backends: backends, dial: dial, log: log}
}

// serve accepts on ln until ctx ends. Connections in flight are cut when the
// process exits.
func (p *proxy) serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// EMFILE and friends: back off briefly instead of spinning.
			time.Sleep(5 * time.Millisecond)
			continue
		}
		p.accepted.Add(1)
		go p.handle(ctx, c)
	}
}

// closeWriter is a connection that can send FIN while still reading:
// *net.TCPConn and *net.UnixConn.
type closeWriter interface {
	CloseWrite() error
}

// handle relays one client connection to the next backend.
func (p *proxy) handle(ctx context.Context, client net.Conn) {
	p.active.Add(1)
	defer p.active.Add(-1)
	defer client.Close()
	addr := p.backends[(p.next.Add(1)-1)%uint64(len(p.backends))]
	dctx, cancel := context.WithTimeout(ctx, proxyDialTimeout)
	backend, err := p.dial(dctx, addr)
	cancel()
	if err != nil {
		p.dialFailed.Add(1)
		return
	}
	defer backend.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pipe(backend, client)
	}()
	pipe(client, backend)
	wg.Wait()
}

// pipe copies src to dst until EOF, then half-closes dst. On an error (a
// reset) it closes both, so that the other direction ends too.
func pipe(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if err == nil {
		if cw, ok := dst.(closeWriter); ok && cw.CloseWrite() == nil {
			return
		}
	}
	dst.Close()
	src.Close()
}

func runProxy(e env, args []string) int {
	fs := newFlagSet("proxy", "--listen IP:PORT --backend IP:PORT[,IP:PORT...] [--cc ALG]")
	listen := fs.String("listen", "", "`ADDR` to listen on, [IP]:PORT")
	backends := fs.String("backend", "", "comma-separated backend `ADDRS`, IP:PORT, used round robin")
	cc := fs.String("cc", "", "TCP congestion control `ALG` of every socket (default: the system's)")
	if code, done := parseFlags(e, fs, args, false); done {
		return code
	}
	if _, _, err := net.SplitHostPort(*listen); err != nil {
		return usageError(e, fs, "--listen %q: want [IP]:PORT", *listen)
	}
	bs, err := parseAddrPorts(*backends)
	if err != nil {
		return usageError(e, fs, "--backend %v", err)
	}
	addrs := make([]string, len(bs))
	for i, b := range bs {
		addrs[i] = b.String()
	}
	log := slog.New(slog.NewTextHandler(e.stderr, nil)).With("cmd", "l4bench proxy")
	ln, err := (&net.ListenConfig{Control: sockOpts(*cc, false)}).Listen(e.ctx, "tcp", *listen)
	if err != nil {
		return failf(e, fs, "listen %s: %v", *listen, strings.TrimPrefix(err.Error(), "listen tcp "+*listen+": "))
	}
	d := &net.Dialer{Control: sockOpts(*cc, false)}
	p := newProxy(addrs, func(ctx context.Context, addr string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", addr)
	}, log)
	log.Info("proxying", "listen", ln.Addr().String(), "backends", strings.Join(addrs, ","), "cc", *cc)
	err = p.serve(e.ctx, ln)
	log.Info("stopped", "accepted", p.accepted.Load(), "dial_failed", p.dialFailed.Load(), "active", p.active.Load())
	if err != nil {
		return failf(e, fs, "serve %s: %v", *listen, err)
	}
	return exitOK
}
