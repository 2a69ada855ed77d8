package main

import (
	"context"
	"fmt"
	"net"
	"time"
)

// waitInterval is the pause between two connect attempts of "wait".
const waitInterval = 100 * time.Millisecond

// waitConnect polls a TCP connect to target every interval until one
// succeeds, ctx ends or timeout passes; it returns the number of attempts.
func waitConnect(ctx context.Context, dial func(ctx context.Context, addr string) (net.Conn, error),
	target string, timeout, interval time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for tries := 1; ; tries++ {
		actx, acancel := context.WithTimeout(ctx, max(interval, 200*time.Millisecond))
		c, err := dial(actx, target)
		acancel()
		if err == nil {
			c.Close()
			return tries, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return tries, fmt.Errorf("connect %s: not accepted after %d attempts in %v: %w", target, tries, timeout, last)
		case <-time.After(interval):
		}
	}
}

func runWait(e env, args []string) int {
	fs := newFlagSet("wait", "--target IP:PORT [--timeout D]")
	target := fs.String("target", "", "`IP:PORT` to connect to")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after `D`")
	if code, done := parseFlags(e, fs, args, false); done {
		return code
	}
	if _, err := parseAddrPorts(*target); err != nil {
		return usageError(e, fs, "--target %v", err)
	}
	if *timeout <= 0 {
		return usageError(e, fs, "--timeout %v: must be positive", *timeout)
	}
	d := &net.Dialer{}
	tries, err := waitConnect(e.ctx, func(ctx context.Context, addr string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", addr)
	}, *target, *timeout, waitInterval)
	if err != nil {
		return failf(e, fs, "%v", err)
	}
	fmt.Fprintf(e.stdout, "%s accepts connections (attempt %d)\n", *target, tries)
	return exitOK
}
