package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"
)

// connectResult is what connect prints; with --json, one object.
type connectResult struct {
	Addr   string  `json:"addr"`
	Result string  `json:"result"` // ok, refused, reset, timeout, other (see classify)
	MS     float64 `json:"ms"`     // time to the answer to the SYN (or to giving up)
	Error  string  `json:"error,omitempty"`
}

func runConnect(e env, args []string) int {
	fs := newFlagSet("connect", "--addr IP:PORT [--timeout D] [--json]")
	addr := fs.String("addr", "", "`IP:PORT` to connect to")
	timeout := fs.Duration("timeout", time.Second, "give up after this long")
	asJSON := fs.Bool("json", false, "print the result as one JSON object")
	cc := fs.String("cc", "", "TCP congestion control `ALG` of this program's sockets (default: the system's)")
	if code, done := parseFlags(e, fs, args); done {
		return code
	}
	e = e.withCC(*cc)
	ap, err := netip.ParseAddrPort(*addr)
	if err != nil {
		return usageError(e, fs, "--addr %q: want IP:PORT", *addr)
	}
	if *timeout <= 0 {
		return usageError(e, fs, "--timeout %v: must be positive", *timeout)
	}
	ctx, cancel := context.WithTimeout(e.ctx, *timeout)
	start := time.Now()
	conn, err := e.dial(ctx, "tcp", ap.String())
	d := time.Since(start)
	cancel()
	if err == nil {
		conn.Close()
	}
	r := connectResult{Addr: ap.String(), Result: classify(err), MS: ms(d)}
	if err != nil {
		r.Error = err.Error()
	}
	if *asJSON {
		out, _ := json.Marshal(r)
		fmt.Fprintf(e.stdout, "%s\n", out)
	} else if err != nil {
		fmt.Fprintf(e.stdout, "%s %s in %.2f ms: %s\n", r.Addr, r.Result, r.MS, r.Error)
	} else {
		fmt.Fprintf(e.stdout, "%s ok in %.2f ms\n", r.Addr, r.MS)
	}
	if err != nil {
		return exitFail
	}
	return exitOK
}
