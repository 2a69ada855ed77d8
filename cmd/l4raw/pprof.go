package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"time"
)

// checkPprof accepts a loopback IP:PORT: profiles show the process's
// memory and code, so they are never served beyond the host.
func checkPprof(addr string) error {
	if addr == "" {
		return nil
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().IsLoopback() || ap.Port() == 0 {
		return fmt.Errorf("--pprof %q: want a loopback IP:PORT, e.g. 127.0.0.1:6060", addr)
	}
	return nil
}

// servePprof serves Go's profiles (go tool pprof http://ADDR/debug/pprof/profile)
// until the listener closes.
func (d *daemon) servePprof(ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	d.log.Info("serving profiles", "addr", ln.Addr().String())
	_ = srv.Serve(ln)
}
