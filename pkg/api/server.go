package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// maxBody bounds a request body. The largest legitimate one is a backend
// ({"address","weight"}, under 100 bytes); 1 MiB leaves room for anything
// the API may grow and still keeps a client from filling memory.
const maxBody = 1 << 20

// Timeouts of the HTTP server. A request is a few hundred bytes and an
// answer at most a flow page (about 2 MB), all on loopback by default:
// anything slower is a stuck or hostile client. Scrapes are bounded by
// Prometheus's own default scrape timeout (10 s) on the other side.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	shutdownTimeout   = 5 * time.Second // for requests in flight when Serve's context ends
	maxHeaderBytes    = 64 << 10
)

// Server serves the API and /metrics for one Controller. It is an
// http.Handler; Serve runs it on a listener with timeouts set.
type Server struct {
	c       Controller
	log     *slog.Logger
	handler http.Handler
}

// NewServer returns the API for c. A nil log discards. Metrics come from a
// registry of the server's own (the Controller's counters, the Go runtime
// and the process), so several servers in one process do not clash.
func NewServer(c Controller, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{c: c, log: log}

	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(c), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// A collision in one metric (two backends reported twice, say)
		// must not hide all the others from the scrape.
		ErrorHandling: promhttp.ContinueOnError,
		// Scrapes read the whole Controller; a handful at once is plenty.
		MaxRequestsInFlight: 4,
	})

	mux := http.NewServeMux()
	routes := []struct {
		method, path string
		h            http.HandlerFunc
	}{
		{"GET", "/healthz", s.healthz},
		{"GET", "/metrics", metrics.ServeHTTP},
		{"GET", "/api/v1/status", s.status},
		{"GET", "/api/v1/services", s.services},
		{"GET", "/api/v1/services/{name}", s.service},
		{"GET", "/api/v1/services/{name}/backends", s.backends},
		{"POST", "/api/v1/services/{name}/backends", s.addBackend},
		{"DELETE", "/api/v1/services/{name}/backends/{addr}", s.removeBackend},
		{"PATCH", "/api/v1/services/{name}/backends/{addr}", s.patchBackend},
		{"GET", "/api/v1/flows", s.flows},
		{"POST", "/api/v1/reload", s.reload},
	}
	allowed := map[string][]string{}
	var paths []string
	for _, r := range routes {
		mux.HandleFunc(r.method+" "+r.path, r.h)
		if _, ok := allowed[r.path]; !ok {
			paths = append(paths, r.path)
		}
		allowed[r.path] = append(allowed[r.path], r.method)
	}
	// The mux's own 404 and 405 answers are plain text; these give the
	// API's JSON instead. A pattern without a method is less specific than
	// the same one with a method, so it only sees the other methods.
	for _, p := range paths {
		methods := allowed[p]
		if slices.Contains(methods, "GET") {
			methods = append(methods, "HEAD")
		}
		slices.Sort(methods)
		allow := strings.Join(methods, ", ")
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: method not allowed (allowed: %s)", r.Method, r.URL.Path, allow))
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("%s: no such endpoint", r.URL.Path))
	})

	// The API changes the balancer: refuse state-changing requests a
	// browser makes on behalf of another site (CSRF). Tools like curl and
	// l4raw ctl send no Origin or Sec-Fetch-Site header and pass.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, fmt.Sprintf("%s %s: cross-origin request refused", r.Method, r.URL.Path))
	}))
	s.handler = cop.Handler(mux)
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Serve answers on l until ctx ends, then waits up to 5 s for requests in
// flight and returns nil. It closes l. Other errors are the listener's.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		return fmt.Errorf("api: serve on %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-done
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, "ok\n")
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	if !noQuery(w, r) {
		return
	}
	st := s.c.Status()
	if st.Counters == nil {
		st.Counters = map[string]uint64{}
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) services(w http.ResponseWriter, r *http.Request) {
	if !noQuery(w, r) {
		return
	}
	svcs := s.c.Services()
	for i := range svcs {
		fixService(&svcs[i])
	}
	if svcs == nil {
		svcs = []ServiceInfo{}
	}
	writeJSON(w, http.StatusOK, svcs)
}

func (s *Server) service(w http.ResponseWriter, r *http.Request) {
	if !noQuery(w, r) {
		return
	}
	svc, ok := s.findService(w, r.PathValue("name"))
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, svc)
}

func (s *Server) backends(w http.ResponseWriter, r *http.Request) {
	if !noQuery(w, r) {
		return
	}
	svc, ok := s.findService(w, r.PathValue("name"))
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, svc.Backends)
}

// findService answers 404 itself when there is no such service.
func (s *Server) findService(w http.ResponseWriter, name string) (ServiceInfo, bool) {
	for _, svc := range s.c.Services() {
		if svc.Name == name {
			fixService(&svc)
			return svc, true
		}
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("service %q: %v", name, ErrNotFound))
	return ServiceInfo{}, false
}

// fixService makes empty lists [] rather than null in JSON.
func fixService(svc *ServiceInfo) {
	if svc.Ports == nil {
		svc.Ports = []uint16{}
	}
	if svc.Backends == nil {
		svc.Backends = []BackendInfo{}
	}
}

// addRequest is the body of POST .../backends.
type addRequest struct {
	Address string `json:"address"`
	Weight  *int   `json:"weight"` // absent: DefaultWeight
}

// patchRequest is the body of PATCH .../backends/{addr}; at least one field.
type patchRequest struct {
	Weight *int    `json:"weight"`
	State  *string `json:"state"`
}

func (s *Server) addBackend(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req addRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Address == "" {
		writeError(w, http.StatusBadRequest, "body: address: missing")
		return
	}
	addr, err := ParseBackend(req.Address)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("body: address %q: %v", req.Address, err))
		return
	}
	weight := DefaultWeight
	if req.Weight != nil {
		weight = *req.Weight
	}
	if !checkWeight(w, weight) {
		return
	}
	if err := s.c.AddBackend(name, addr, weight); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("backend added", "service", name, "backend", FormatBackend(addr), "weight", weight, "from", r.RemoteAddr)
	be := s.lookup(name, addr, BackendInfo{Weight: weight})
	w.Header().Set("Location", backendPath(name, addr))
	writeJSON(w, http.StatusCreated, be)
}

func (s *Server) removeBackend(w http.ResponseWriter, r *http.Request) {
	if !noQuery(w, r) {
		return
	}
	name := r.PathValue("name")
	addr, ok := pathBackend(w, r)
	if !ok {
		return
	}
	// The answer is the backend as it was just before it went: its totals
	// and how many connections it still had.
	be := s.lookup(name, addr, BackendInfo{})
	if err := s.c.RemoveBackend(name, addr); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("backend removed", "service", name, "backend", FormatBackend(addr), "active", be.Active, "from", r.RemoteAddr)
	writeJSON(w, http.StatusOK, be)
}

func (s *Server) patchBackend(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	addr, ok := pathBackend(w, r)
	if !ok {
		return
	}
	var req patchRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Weight == nil && req.State == nil {
		writeError(w, http.StatusBadRequest, `body: want "weight", "state" or both`)
		return
	}
	// Check both values before changing anything, so that a bad state
	// does not leave a new weight behind.
	if req.Weight != nil && !checkWeight(w, *req.Weight) {
		return
	}
	if req.State != nil && !ValidState(*req.State) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("body: state %q: want %s, %s or %s: %v", *req.State, StateReady, StateDrain, StateMaint, ErrInvalid))
		return
	}
	if req.Weight != nil {
		if err := s.c.SetWeight(name, addr, *req.Weight); err != nil {
			s.fail(w, r, err)
			return
		}
		s.log.Info("backend weight set", "service", name, "backend", FormatBackend(addr), "weight", *req.Weight, "from", r.RemoteAddr)
	}
	if req.State != nil {
		if err := s.c.SetState(name, addr, *req.State); err != nil {
			s.fail(w, r, err)
			return
		}
		s.log.Info("backend state set", "service", name, "backend", FormatBackend(addr), "state", *req.State, "from", r.RemoteAddr)
	}
	writeJSON(w, http.StatusOK, s.lookup(name, addr, BackendInfo{}))
}

func (s *Server) flows(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k := range q {
		switch k {
		case "service", "backend", "offset", "limit":
			if len(q[k]) > 1 {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("query: %s given %d times", k, len(q[k])))
				return
			}
		default:
			writeError(w, http.StatusBadRequest, fmt.Sprintf("query: %q: unknown parameter (want service, backend, offset, limit)", k))
			return
		}
	}
	f := FlowFilter{Service: q.Get("service")}
	if b := q.Get("backend"); b != "" {
		ap, err := netip.ParseAddrPort(b)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("query: backend %q: want IP:PORT", b))
			return
		}
		f.Backend = ap.String()
	}
	offset, ok := queryInt(w, q, "offset", 0, 0, int(^uint(0)>>1))
	if !ok {
		return
	}
	limit, ok := queryInt(w, q, "limit", DefaultFlowLimit, 1, MaxFlowLimit)
	if !ok {
		return
	}
	page, err := s.c.Flows(f, offset, limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if page.Flows == nil {
		page.Flows = []FlowInfo{}
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	if !noQuery(w, r) {
		return
	}
	// No body is expected; an empty JSON object is accepted too.
	var req struct{}
	if !decodeOptionalBody(w, r, &req) {
		return
	}
	s.log.Info("reload requested", "from", r.RemoteAddr)
	if err := s.c.Reload(); err != nil {
		s.fail(w, r, err)
		return
	}
	st := s.c.Status()
	if st.Counters == nil {
		st.Counters = map[string]uint64{}
	}
	writeJSON(w, http.StatusOK, st)
}

// lookup finds the backend in the Controller's view, or returns fallback
// with the service and address filled in (it may have just gone).
func (s *Server) lookup(service string, addr netip.AddrPort, fallback BackendInfo) BackendInfo {
	for _, svc := range s.c.Services() {
		if svc.Name != service {
			continue
		}
		for _, be := range svc.Backends {
			if ap, err := ParseBackend(be.Address); err == nil && ap == addr {
				return be
			}
		}
	}
	fallback.Service, fallback.Address = service, FormatBackend(addr)
	return fallback
}

// fail answers with the Controller's error: 404, 400 or 409 for the
// sentinels, 500 (and a log line) for anything else.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, ErrExists):
		code = http.StatusConflict
	default:
		s.log.Warn("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, code, err.Error())
}

func backendPath(service string, addr netip.AddrPort) string {
	return "/api/v1/services/" + url.PathEscape(service) + "/backends/" + url.PathEscape(FormatBackend(addr))
}

func pathBackend(w http.ResponseWriter, r *http.Request) (netip.AddrPort, bool) {
	s := r.PathValue("addr")
	ap, err := ParseBackend(s)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("path: backend %q: %v", s, err))
		return netip.AddrPort{}, false
	}
	return ap, true
}

func checkWeight(w http.ResponseWriter, weight int) bool {
	if weight < MinWeight || weight > MaxWeight {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("body: weight %d: want %d..%d: %v", weight, MinWeight, MaxWeight, ErrInvalid))
		return false
	}
	return true
}

func queryInt(w http.ResponseWriter, q url.Values, key string, def, lo, hi int) (int, bool) {
	s := q.Get(key)
	if s == "" {
		return def, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("query: %s %q: want an integer %d..%d", key, s, lo, hi))
		return 0, false
	}
	return n, true
}

// noQuery refuses query parameters on endpoints that take none, so that a
// mistyped filter is an error rather than silently ignored.
func noQuery(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.RawQuery == "" {
		return true
	}
	writeError(w, http.StatusBadRequest, fmt.Sprintf("query %q: %s takes no parameters", r.URL.RawQuery, r.URL.Path))
	return false
}

// decodeBody reads exactly one JSON object with only known fields from a
// body of at most maxBody bytes.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if !noQuery(w, r) {
		return false
	}
	data, ok := readBody(w, r)
	if !ok {
		return false
	}
	if len(bytes.TrimSpace(data)) == 0 {
		writeError(w, http.StatusBadRequest, "body: missing (want a JSON object)")
		return false
	}
	return unmarshalStrict(w, data, v)
}

// decodeOptionalBody is decodeBody for endpoints whose body may be empty.
func decodeOptionalBody(w http.ResponseWriter, r *http.Request, v any) bool {
	data, ok := readBody(w, r)
	if !ok {
		return false
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return true
	}
	return unmarshalStrict(w, data, v)
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body: larger than %d bytes", mbe.Limit))
		} else {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("body: %v", err))
		}
		return nil, false
	}
	return data, true
}

func unmarshalStrict(w http.ResponseWriter, data []byte, v any) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("body: %v", err))
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, "body: data after the JSON object")
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only unencodable values (NaN latencies) get here.
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("encode answer: %v", err))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(b.Bytes())
}

// errorBody is every error answer: {"error": "..."} on one line.
type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	msg = strings.Join(strings.Fields(msg), " ") // one line, whatever the Controller wrote
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(errorBody{msg}) // a string always encodes; Encode adds the newline
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(b.Bytes())
}
