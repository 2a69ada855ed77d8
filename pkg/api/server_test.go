package api_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/l4raw/l4raw/pkg/api"
	"github.com/l4raw/l4raw/pkg/api/apitest"
)

// checkErrorBody asserts the API's error format: JSON, one line,
// {"error": "..."} with a non-empty message.
func checkErrorBody(t *testing.T, what string, rec *httptest.ResponseRecorder) string {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: error content type %q, want application/json", what, ct)
	}
	body := rec.Body.String()
	if strings.Count(body, "\n") != 1 || !strings.HasSuffix(body, "\n") {
		t.Errorf("%s: error body is not one line: %q", what, body)
	}
	var e struct {
		Error string `json:"error"`
	}
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Error == "" {
		t.Errorf("%s: error body %q: want {\"error\": \"...\"} (%v)", what, body, err)
	}
	return e.Error
}

func do(h http.Handler, method, target, body string, hdr ...string) *httptest.ResponseRecorder {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, r)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestRoutes runs every route, its errors and the strict-JSON rules against
// the Sample fake, each case on a fresh one.
func TestRoutes(t *testing.T) {
	const web = "/api/v1/services/web/backends"
	cases := []struct {
		name         string
		method, path string
		body         string
		hdr          []string
		code         int
		want         string   // in the body (for errors: in the message)
		calls        []string // changing calls the Controller saw
	}{
		{name: "healthz", method: "GET", path: "/healthz", code: 200, want: "ok\n"},
		{name: "status", method: "GET", path: "/api/v1/status", code: 200, want: `"version":"v1.2.3"`},
		{name: "status counters", method: "GET", path: "/api/v1/status", code: 200, want: `"drop_no_flow":5`},
		{name: "status head", method: "HEAD", path: "/api/v1/status", code: 200},
		{name: "status query", method: "GET", path: "/api/v1/status?verbose=1", code: 400, want: "takes no parameters"},
		{name: "services", method: "GET", path: "/api/v1/services", code: 200, want: `"name":"api"`},
		{name: "service", method: "GET", path: "/api/v1/services/web", code: 200, want: `"ports":[80,443]`},
		{name: "service unknown", method: "GET", path: "/api/v1/services/nope", code: 404, want: `service "nope": not found`},
		{name: "backends", method: "GET", path: web, code: 200, want: `"health_reason":"connection refused"`},
		{name: "backends json names", method: "GET", path: web, code: 200, want: `"check_latency_seconds":0.000412,"active":2,"established":1,"conns_total":30,"packets_in":600,"bytes_in":48000,"packets_out":590,"bytes_out":5242880,"nat_ports":2`},
		{name: "backends unknown", method: "GET", path: "/api/v1/services/nope/backends", code: 404, want: `service "nope"`},

		{name: "add", method: "POST", path: web, body: `{"address":"198.18.0.23:8080","weight":3}`, code: 201,
			want: `"address":"198.18.0.23:8080","weight":3,"state":"ready"`, calls: []string{"AddBackend web 198.18.0.23:8080 3"}},
		{name: "add default weight", method: "POST", path: web, body: `{"address":"198.18.0.23:8080"}`, code: 201,
			want: `"weight":1`, calls: []string{"AddBackend web 198.18.0.23:8080 1"}},
		{name: "add weight 0", method: "POST", path: web, body: `{"address":"198.18.0.23:8080","weight":0}`, code: 201,
			want: `"weight":0`, calls: []string{"AddBackend web 198.18.0.23:8080 0"}},
		{name: "add without port", method: "POST", path: web, body: ` {"address": "198.18.0.24"} `, code: 201,
			want: `"address":"198.18.0.24"`, calls: []string{"AddBackend web 198.18.0.24 1"}},
		{name: "add existing", method: "POST", path: web, body: `{"address":"198.18.0.21:8080"}`, code: 409, want: `backend 198.18.0.21:8080: already exists`},
		{name: "add unknown service", method: "POST", path: "/api/v1/services/nope/backends", body: `{"address":"198.18.0.23:8080"}`, code: 404, want: `service "nope"`},
		{name: "add bad address", method: "POST", path: web, body: `{"address":"198.18.0.300:8080"}`, code: 400, want: `"198.18.0.300:8080"`},
		{name: "add no address", method: "POST", path: web, body: `{"weight":2}`, code: 400, want: "address: missing"},
		{name: "add weight too big", method: "POST", path: web, body: `{"address":"198.18.0.23:8080","weight":65536}`, code: 400, want: "weight 65536"},
		{name: "add weight negative", method: "POST", path: web, body: `{"address":"198.18.0.23:8080","weight":-1}`, code: 400, want: "weight -1"},
		{name: "add weight string", method: "POST", path: web, body: `{"address":"198.18.0.23:8080","weight":"3"}`, code: 400, want: "weight"},
		{name: "add weight fraction", method: "POST", path: web, body: `{"address":"198.18.0.23:8080","weight":1.5}`, code: 400, want: "1.5"},
		{name: "add unknown field", method: "POST", path: web, body: `{"address":"198.18.0.23:8080","wieght":3}`, code: 400, want: `unknown field "wieght"`},
		{name: "add empty body", method: "POST", path: web, code: 400, want: "body: missing"},
		{name: "add not json", method: "POST", path: web, body: `address=198.18.0.23`, code: 400, want: "body:"},
		{name: "add two objects", method: "POST", path: web, body: `{"address":"198.18.0.23:8080"}{"address":"198.18.0.25:8080"}`, code: 400, want: "data after"},
		{name: "add array", method: "POST", path: web, body: `[{"address":"198.18.0.23:8080"}]`, code: 400, want: "body:"},
		{name: "add too large", method: "POST", path: web, body: `{"address":"` + strings.Repeat("1", 1<<20) + `"}`, code: 413, want: "larger than 1048576 bytes"},
		{name: "add query", method: "POST", path: web + "?weight=3", body: `{"address":"198.18.0.23:8080"}`, code: 400, want: "takes no parameters"},
		{name: "add cross-origin", method: "POST", path: web, body: `{"address":"198.18.0.23:8080"}`, hdr: []string{"Sec-Fetch-Site", "cross-site"}, code: 403, want: "cross-origin"},
		{name: "add other origin", method: "POST", path: web, body: `{"address":"198.18.0.23:8080"}`, hdr: []string{"Origin", "http://evil.example"}, code: 403, want: "cross-origin"},
		{name: "add same origin", method: "POST", path: web, body: `{"address":"198.18.0.23:8080"}`, hdr: []string{"Sec-Fetch-Site", "same-origin"}, code: 201, calls: []string{"AddBackend web 198.18.0.23:8080 1"}},

		{name: "remove", method: "DELETE", path: web + "/198.18.0.21:8080", code: 200,
			want: `"address":"198.18.0.21:8080","weight":1,"state":"ready","health":"up"`, calls: []string{"RemoveBackend web 198.18.0.21:8080"}},
		{name: "remove unknown", method: "DELETE", path: web + "/198.18.0.99:8080", code: 404, want: "backend 198.18.0.99:8080: not found"},
		{name: "remove bad address", method: "DELETE", path: web + "/backend-one", code: 400, want: `"backend-one"`},
		{name: "remove cross-origin", method: "DELETE", path: web + "/198.18.0.21:8080", hdr: []string{"Sec-Fetch-Site", "cross-site"}, code: 403},

		{name: "weight", method: "PATCH", path: web + "/198.18.0.21:8080", body: `{"weight":5}`, code: 200,
			want: `"weight":5`, calls: []string{"SetWeight web 198.18.0.21:8080 5"}},
		{name: "drain", method: "PATCH", path: web + "/198.18.0.21:8080", body: `{"state":"drain"}`, code: 200,
			want: `"state":"drain"`, calls: []string{"SetState web 198.18.0.21:8080 drain"}},
		{name: "weight and state", method: "PATCH", path: web + "/198.18.0.22:8080", body: `{"weight":0,"state":"ready"}`, code: 200,
			want: `"weight":0,"state":"ready"`, calls: []string{"SetWeight web 198.18.0.22:8080 0", "SetState web 198.18.0.22:8080 ready"}},
		{name: "bad state changes nothing", method: "PATCH", path: web + "/198.18.0.21:8080", body: `{"weight":5,"state":"down"}`, code: 400, want: `state "down"`},
		{name: "bad weight changes nothing", method: "PATCH", path: web + "/198.18.0.21:8080", body: `{"weight":70000,"state":"drain"}`, code: 400, want: "weight 70000"},
		{name: "patch nothing", method: "PATCH", path: web + "/198.18.0.21:8080", body: `{}`, code: 400, want: `want "weight", "state" or both`},
		{name: "patch null", method: "PATCH", path: web + "/198.18.0.21:8080", body: `null`, code: 400, want: `want "weight"`},
		{name: "patch unknown field", method: "PATCH", path: web + "/198.18.0.21:8080", body: `{"status":"drain"}`, code: 400, want: `unknown field "status"`},
		{name: "patch unknown backend", method: "PATCH", path: web + "/198.18.0.99:8080", body: `{"state":"drain"}`, code: 404, want: "198.18.0.99:8080"},
		{name: "patch unknown service", method: "PATCH", path: "/api/v1/services/nope/backends/198.18.0.21:8080", body: `{"state":"drain"}`, code: 404, want: `service "nope"`},

		{name: "flows", method: "GET", path: "/api/v1/flows", code: 200, want: `"total":3,"offset":0,"next":-1`},
		{name: "flows json names", method: "GET", path: "/api/v1/flows?limit=1", code: 200,
			want: `{"flows":[{"service":"web","client":"198.18.1.10:40000","vip":"198.18.0.100:80","backend":"198.18.0.21:8080","snat":"198.18.0.2:61000","state":"ESTABLISHED","idle_seconds":0.5}],"total":3,"offset":0,"next":1}`},
		{name: "flows last page", method: "GET", path: "/api/v1/flows?offset=2&limit=2", code: 200, want: `"total":3,"offset":2,"next":-1`},
		{name: "flows past the end", method: "GET", path: "/api/v1/flows?offset=9", code: 200, want: `{"flows":[],"total":3,"offset":9,"next":-1}`},
		{name: "flows by backend", method: "GET", path: "/api/v1/flows?backend=198.18.0.22:8080", code: 200, want: `"total":1`},
		{name: "flows by service", method: "GET", path: "/api/v1/flows?service=api", code: 200, want: `{"flows":[],"total":0,"offset":0,"next":-1}`},
		{name: "flows unknown service", method: "GET", path: "/api/v1/flows?service=nope", code: 404, want: `service "nope"`},
		{name: "flows max limit", method: "GET", path: "/api/v1/flows?limit=10000", code: 200},
		{name: "flows limit 0", method: "GET", path: "/api/v1/flows?limit=0", code: 400, want: `limit "0": want an integer 1..10000`},
		{name: "flows limit too big", method: "GET", path: "/api/v1/flows?limit=10001", code: 400, want: `limit "10001"`},
		{name: "flows limit word", method: "GET", path: "/api/v1/flows?limit=all", code: 400, want: `limit "all"`},
		{name: "flows offset negative", method: "GET", path: "/api/v1/flows?offset=-1", code: 400, want: `offset "-1"`},
		{name: "flows backend without port", method: "GET", path: "/api/v1/flows?backend=198.18.0.22", code: 400, want: `backend "198.18.0.22": want IP:PORT`},
		{name: "flows unknown parameter", method: "GET", path: "/api/v1/flows?servcie=web", code: 400, want: `"servcie": unknown parameter`},
		{name: "flows repeated parameter", method: "GET", path: "/api/v1/flows?limit=1&limit=2", code: 400, want: "limit given 2 times"},

		{name: "reload", method: "POST", path: "/api/v1/reload", code: 200, want: `"services":2`, calls: []string{"Reload"}},
		{name: "reload empty object", method: "POST", path: "/api/v1/reload", body: `{}`, code: 200, calls: []string{"Reload"}},
		{name: "reload with body", method: "POST", path: "/api/v1/reload", body: `{"force":true}`, code: 400, want: `unknown field "force"`},
		{name: "reload cross-origin", method: "POST", path: "/api/v1/reload", hdr: []string{"Sec-Fetch-Site", "cross-site"}, code: 403, want: "cross-origin"},
		{name: "reload by GET", method: "GET", path: "/api/v1/reload", code: 405, want: "GET /api/v1/reload: method not allowed (allowed: POST)"},
		{name: "status by PUT", method: "PUT", path: "/api/v1/status", code: 405, want: "allowed: GET, HEAD"},
		{name: "backends by PUT", method: "PUT", path: web, code: 405, want: "allowed: GET, HEAD, POST"},
		{name: "unknown path", method: "GET", path: "/api/v2/status", code: 404, want: "/api/v2/status: no such endpoint"},
		{name: "root", method: "GET", path: "/", code: 404, want: "no such endpoint"},
		{name: "metrics", method: "GET", path: "/metrics", code: 200, want: `l4raw_build_info{commit="abc1234",version="v1.2.3"} 1`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := apitest.Sample()
			h := api.NewServer(f, nil)
			rec := do(h, c.method, c.path, c.body, c.hdr...)
			if rec.Code != c.code {
				t.Fatalf("%s %s: HTTP %d, want %d: %s", c.method, c.path, rec.Code, c.code, rec.Body.String())
			}
			got := rec.Body.String()
			if c.code >= 300 {
				got = checkErrorBody(t, c.name, rec)
			} else if c.method != "HEAD" && c.path != "/healthz" && c.path != "/metrics" {
				if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
					t.Errorf("content type %q, want application/json", ct)
				}
				if !json.Valid(rec.Body.Bytes()) {
					t.Errorf("answer is not JSON: %q", got)
				}
			}
			if !strings.Contains(got, c.want) {
				t.Errorf("%s %s: answer %q does not contain %q", c.method, c.path, got, c.want)
			}
			if calls := f.Calls(); !slices.Equal(calls, c.calls) {
				t.Errorf("%s %s: Controller calls %q, want %q", c.method, c.path, calls, c.calls)
			}
		})
	}
}

func TestMethodNotAllowedHeader(t *testing.T) {
	rec := do(api.NewServer(apitest.Sample(), nil), "DELETE", "/api/v1/services/web/backends", "")
	if rec.Code != 405 || rec.Header().Get("Allow") != "GET, HEAD, POST" {
		t.Fatalf("HTTP %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
}

func TestAddLocation(t *testing.T) {
	rec := do(api.NewServer(apitest.Sample(), nil), "POST", "/api/v1/services/web/backends", `{"address":"198.18.0.23:8080"}`)
	if loc := rec.Header().Get("Location"); loc != "/api/v1/services/web/backends/198.18.0.23:8080" {
		t.Fatalf("Location %q", loc)
	}
}

// TestControllerErrors: the Controller's sentinels pick the status, other
// errors are 500, and a message is always one line.
func TestControllerErrors(t *testing.T) {
	const be = "/api/v1/services/web/backends/198.18.0.21:8080"
	reqs := map[string]struct{ method, path, body string }{
		"AddBackend":    {"POST", "/api/v1/services/web/backends", `{"address":"198.18.0.23:8080"}`},
		"RemoveBackend": {"DELETE", be, ""},
		"SetWeight":     {"PATCH", be, `{"weight":2}`},
		"SetState":      {"PATCH", be, `{"state":"maint"}`},
		"Flows":         {"GET", "/api/v1/flows", ""},
		"Reload":        {"POST", "/api/v1/reload", ""},
	}
	errs := []struct {
		err  error
		code int
		msg  string
	}{
		{fmt.Errorf("service %q: %w", "web", api.ErrNotFound), 404, `service "web": not found`},
		{fmt.Errorf("weight 7: %w", api.ErrInvalid), 400, "weight 7: invalid"},
		{fmt.Errorf("backend 198.18.0.23:8080: %w", api.ErrExists), 409, "backend 198.18.0.23:8080: already exists"},
		{errors.New("nat: pool for 198.18.0.23:8080:\nout of memory"), 500, "nat: pool for 198.18.0.23:8080: out of memory"},
	}
	for op, r := range reqs {
		for _, e := range errs {
			f := apitest.Sample()
			f.FailNext(op, e.err)
			rec := do(api.NewServer(f, nil), r.method, r.path, r.body)
			if rec.Code != e.code {
				t.Errorf("%s failing with %q: HTTP %d, want %d", op, e.err, rec.Code, e.code)
				continue
			}
			if msg := checkErrorBody(t, op, rec); msg != e.msg {
				t.Errorf("%s: message %q, want %q", op, msg, e.msg)
			}
			if len(f.Calls()) != 0 {
				t.Errorf("%s: a failed call was recorded: %q", op, f.Calls())
			}
		}
	}
}

// TestEscapedNames: service names may hold any character; the path carries
// them escaped.
func TestEscapedNames(t *testing.T) {
	for _, name := range []string{"198.18.0.100:80", "a/b c", "web%20"} {
		f := apitest.New(api.Status{}, []api.ServiceInfo{{Name: name, VIP: "198.18.0.100"}}, nil)
		h := api.NewServer(f, nil)
		path := "/api/v1/services/" + url.PathEscape(name) + "/backends"
		if rec := do(h, "GET", path, ""); rec.Code != 200 || rec.Body.String() != "[]\n" {
			t.Errorf("%q: GET %s: HTTP %d %q", name, path, rec.Code, rec.Body.String())
		}
		if rec := do(h, "POST", path, `{"address":"198.18.0.23:8080"}`); rec.Code != 201 {
			t.Errorf("%q: POST %s: HTTP %d %q", name, path, rec.Code, rec.Body.String())
		}
	}
}

// TestEmptyLists: no services, no backends, no flows give [] and not null.
func TestEmptyLists(t *testing.T) {
	h := api.NewServer(apitest.New(api.Status{}, []api.ServiceInfo{{Name: "x"}}, nil), nil)
	for path, want := range map[string]string{
		"/api/v1/services":            `[{"name":"x","vip":"","ports":[],"mode":"","scheduler":"","backends":[]}]` + "\n",
		"/api/v1/services/x/backends": "[]\n",
		"/api/v1/flows":               `{"flows":[],"total":0,"offset":0,"next":-1}` + "\n",
	} {
		if got := do(h, "GET", path, "").Body.String(); got != want {
			t.Errorf("GET %s = %q, want %q", path, got, want)
		}
	}
	h = api.NewServer(apitest.New(api.Status{}, nil, nil), nil)
	if got := do(h, "GET", "/api/v1/services", "").Body.String(); got != "[]\n" {
		t.Errorf("no services: %q", got)
	}
	if got := do(h, "GET", "/api/v1/status", "").Body.String(); !strings.Contains(got, `"counters":{}`) {
		t.Errorf("no counters: %q", got)
	}
}

// FuzzHandler: whatever arrives, the server does not panic, never blames
// itself (no 5xx from a fake that does not fail), and every error is the
// one-line JSON form.
func FuzzHandler(f *testing.F) {
	f.Add(uint8(0), "/api/v1/status", "")
	f.Add(uint8(1), "/api/v1/services/web/backends", `{"address":"198.18.0.23:8080","weight":3}`)
	f.Add(uint8(3), "/api/v1/services/web/backends/198.18.0.21:8080", `{"state":"drain"}`)
	f.Add(uint8(2), "/api/v1/services/web/backends/198.18.0.21", "")
	f.Add(uint8(0), "/api/v1/flows?offset=1&limit=2&backend=198.18.0.21:8080", "")
	f.Add(uint8(1), "/api/v1/reload", "{}")
	methods := []string{"GET", "POST", "DELETE", "PATCH", "PUT", "HEAD", "OPTIONS"}
	f.Fuzz(func(t *testing.T, m uint8, path, body string) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n\t#") || path == "/metrics" {
			return
		}
		req, err := http.NewRequest(methods[int(m)%len(methods)], "http://l4raw"+path, strings.NewReader(body))
		if err != nil {
			return
		}
		rec := httptest.NewRecorder()
		api.NewServer(apitest.Sample(), nil).ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: HTTP %d %q", req.Method, path, body, rec.Code, rec.Body.String())
		}
		if rec.Code >= 400 && req.Method != "HEAD" {
			checkErrorBody(t, req.Method+" "+path, rec)
		}
	})
}

func FuzzParseBackend(f *testing.F) {
	for _, s := range []string{"198.18.0.21:8080", "198.18.0.21", "[2001:db8::1]:80", "2001:db8::1", ":80", "198.18.0.21:", "198.18.0.21:65536", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ap, err := api.ParseBackend(s)
		if err != nil {
			return
		}
		back, err := api.ParseBackend(api.FormatBackend(ap))
		if err != nil || back != ap {
			t.Fatalf("%q -> %v -> %q -> %v, %v", s, ap, api.FormatBackend(ap), back, err)
		}
	})
}
