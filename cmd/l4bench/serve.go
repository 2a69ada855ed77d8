package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The short-connection protocol: the client sends one line (a request of
// requestBytes ending in '\n'), the server answers replyBytes ending in '\n'
// and closes first, as an HTTP/1.0 server does. The server therefore holds
// TIME_WAIT, which is what stresses a NAT's port reuse.
const (
	defaultRequestBytes = 64  // a small GET line
	defaultReplyBytes   = 128 // a small answer with headers
	maxMessageBytes     = 1 << 20
	// maxRequestLine bounds what the server reads before giving up on a
	// request without '\n' (4 KiB, a common HTTP request-line limit).
	maxRequestLine = 4 << 10
	// connDeadline bounds one server-side connection: a client that stalls
	// does not hold a goroutine for long.
	connDeadline = 10 * time.Second
)

// message returns n bytes: printable filler ending in '\n'.
func message(n int, fill byte) []byte {
	b := bytes.Repeat([]byte{fill}, n)
	if n > 0 {
		b[n-1] = '\n'
	}
	return b
}

// server answers short connections.
type server struct {
	reply []byte
	log   *slog.Logger

	accepted atomic.Uint64
	answered atomic.Uint64
	failed   atomic.Uint64
}

func newServer(replyBytes int, log *slog.Logger) *server {
	return &server{reply: message(replyBytes, 'r'), log: log}
}

// serve accepts on ln until ctx ends; it returns once every connection
// handler has finished.
func (s *server) serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// EMFILE and friends: back off briefly instead of spinning.
			s.failed.Add(1)
			time.Sleep(5 * time.Millisecond)
			continue
		}
		s.accepted.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s.handle(c) == nil {
				s.answered.Add(1)
			} else {
				s.failed.Add(1)
			}
		}()
	}
}

// handle reads the request line, writes the reply and closes. The whole
// request is read before closing: closing with unread data would send a RST
// instead of a FIN.
func (s *server) handle(c net.Conn) error {
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(connDeadline)); err != nil {
		return err
	}
	var buf [512]byte
	total := 0
	for {
		n, err := c.Read(buf[:])
		total += n
		if n > 0 && bytes.IndexByte(buf[:n], '\n') >= 0 {
			break
		}
		if err != nil {
			return err // EOF before a full line: a probe, nothing to answer
		}
		if total > maxRequestLine {
			return fmt.Errorf("request longer than %d bytes without a newline", maxRequestLine)
		}
	}
	_, err := c.Write(s.reply)
	return err
}

func runServe(e env, args []string) int {
	fs := newFlagSet("serve", "--listen IP:PORT [--reply-bytes N] [--cc ALG]")
	listen := fs.String("listen", ":8080", "`ADDR` to listen on, [IP]:PORT")
	reply := fs.Int("reply-bytes", defaultReplyBytes, "size of the answer in `bytes`")
	cc := fs.String("cc", "", "TCP congestion control `ALG` of the listening socket (default: the system's)")
	if code, done := parseFlags(e, fs, args, false); done {
		return code
	}
	if _, _, err := net.SplitHostPort(*listen); err != nil {
		return usageError(e, fs, "--listen %q: want [IP]:PORT", *listen)
	}
	if *reply < 1 || *reply > maxMessageBytes {
		return usageError(e, fs, "--reply-bytes %d: want 1 to %d", *reply, maxMessageBytes)
	}
	log := slog.New(slog.NewTextHandler(e.stderr, nil)).With("cmd", "l4bench serve")
	ln, err := (&net.ListenConfig{Control: sockOpts(*cc, false)}).Listen(e.ctx, "tcp", *listen)
	if err != nil {
		return failf(e, fs, "listen %s: %v", *listen, strings.TrimPrefix(err.Error(), "listen tcp "+*listen+": "))
	}
	s := newServer(*reply, log)
	log.Info("serving", "listen", ln.Addr().String(), "reply_bytes", *reply, "cc", *cc)
	err = s.serve(e.ctx, ln)
	log.Info("stopped", "accepted", s.accepted.Load(), "answered", s.answered.Load(), "failed", s.failed.Load())
	if err != nil {
		return failf(e, fs, "serve %s: %v", *listen, err)
	}
	return exitOK
}
