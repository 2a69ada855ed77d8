package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

// newHandler serves the backend API. Every answer names the backend and the
// TCP peer it sees, so a client can tell which backend the balancer chose
// and whether the balancer rewrote the source (full NAT) or not (DNAT).
func newHandler(name string) http.Handler {
	mux := http.NewServeMux()
	tag := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		w.Header().Set("X-Remote-Addr", r.RemoteAddr)
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		tag(w, r)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, name+"\n")
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		tag(w, r)
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) {
		tag(w, r)
		writeJSON(w, struct {
			Name   string `json:"name"`
			Remote string `json:"remote"`
		}{name, r.RemoteAddr})
	})
	mux.HandleFunc("GET /bytes", func(w http.ResponseWriter, r *http.Request) {
		tag(w, r)
		q := r.URL.Query()
		n, err := strconv.ParseUint(q.Get("n"), 10, 64)
		if err != nil || n > maxSize {
			http.Error(w, fmt.Sprintf("n %q: want a byte count up to %d", q.Get("n"), uint64(maxSize)), http.StatusBadRequest)
			return
		}
		seed := uint64(1)
		if s := q.Get("seed"); s != "" {
			if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
				http.Error(w, fmt.Sprintf("seed %q: want an unsigned integer", s), http.StatusBadRequest)
				return
			}
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatUint(n, 10))
		st := stream{seed: seed}
		buf := make([]byte, chunkSize)
		for off := uint64(0); off < n; {
			p := buf[:min(uint64(len(buf)), n-off)]
			st.fill(p, off)
			if _, err := w.Write(p); err != nil {
				return // the client went away; nothing to answer
			}
			off += uint64(len(p))
		}
	})
	mux.HandleFunc("POST /sink", func(w http.ResponseWriter, r *http.Request) {
		tag(w, r)
		h := sha256.New()
		n, err := io.CopyBuffer(h, r.Body, make([]byte, chunkSize))
		if err != nil {
			http.Error(w, fmt.Sprintf("read body after %d bytes: %v", n, err), http.StatusBadRequest)
			return
		}
		writeJSON(w, sinkAnswer{Bytes: uint64(n), SHA256: hex.EncodeToString(h.Sum(nil))})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	out, _ := json.Marshal(v)
	w.Write(append(out, '\n'))
}

// shutdownGrace bounds the wait for in-flight requests after SIGTERM (5 s,
// the harness's Stop timeout: it sends SIGKILL after that).
const shutdownGrace = 5 * time.Second

// serve answers on ln until ctx ends, then shuts down gracefully.
func serve(ctx context.Context, ln net.Listener, name string, logger *slog.Logger) error {
	srv := &http.Server{
		Handler:           newHandler(name),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // per-connection noise (resets) is what tests provoke
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-done
	if err != nil {
		return fmt.Errorf("shutdown %s: %w", ln.Addr(), err)
	}
	logger.Info("stopped", "name", name)
	return nil
}

func runServe(e env, args []string) int {
	fs := newFlagSet("serve", "--listen ADDR --name NAME")
	listen := fs.String("listen", ":8080", "`ADDR` to listen on, [IP]:PORT")
	hostname, _ := os.Hostname()
	name := fs.String("name", hostname, "`NAME` this backend answers with")
	cc := fs.String("cc", "", "TCP congestion control `ALG` of this program's sockets (default: the system's)")
	if code, done := parseFlags(e, fs, args); done {
		return code
	}
	if _, _, err := net.SplitHostPort(*listen); err != nil {
		return usageError(e, fs, "--listen %q: want [IP]:PORT", *listen)
	}
	if *name == "" {
		return usageError(e, fs, "--name %q: must not be empty", *name)
	}
	logger := slog.New(slog.NewTextHandler(e.stderr, nil)).With("cmd", "l4echo serve")
	ln, err := (&net.ListenConfig{Control: ccControl(*cc)}).Listen(e.ctx, "tcp", *listen)
	if err != nil {
		fmt.Fprintf(e.stderr, "l4echo serve: %v\n", err)
		return exitFail
	}
	logger.Info("serving", "name", *name, "listen", ln.Addr().String(), "cc", *cc)
	if err := serve(e.ctx, ln, *name, logger); err != nil {
		fmt.Fprintf(e.stderr, "l4echo serve: %v\n", err)
		return exitFail
	}
	return exitOK
}
