package api_test

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/l4raw/l4raw/pkg/api"
	"github.com/l4raw/l4raw/pkg/api/apitest"
)

// serve runs the API for f on an in-memory listener until the test ends
// and returns a client for it and a function that stops the server.
func serve(t *testing.T, f *apitest.Fake) (*api.Client, func()) {
	t.Helper()
	l := apitest.NewPipeListener()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.NewServer(f, nil).Serve(ctx, l) }()
	var once bool
	stop := func() {
		if once {
			return
		}
		once = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return within 10 s of its context ending")
		}
	}
	t.Cleanup(stop)
	hc := l.HTTPClient()
	hc.Timeout = 10 * time.Second
	return api.NewClient("apitest", api.WithHTTPClient(hc)), stop
}

func TestClient(t *testing.T) {
	ctx := context.Background()
	f := apitest.Sample()
	c, _ := serve(t, f)
	web21 := netip.MustParseAddrPort("198.18.0.21:8080")

	if err := c.Healthz(ctx); err != nil {
		t.Fatalf("Healthz: %v", err)
	}
	st, err := c.Status(ctx)
	if err != nil || st.Version != "v1.2.3" || st.Commit != "abc1234" || !st.StartedAt.Equal(apitest.SampleStartedAt()) ||
		st.Services != 2 || st.Conns != 3 || st.ConnLimit != 1048576 || st.Counters["drop_no_flow"] != 5 {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	svcs, err := c.Services(ctx)
	if err != nil || len(svcs) != 2 || svcs[0].Name != "web" || len(svcs[0].Backends) != 2 || svcs[0].Backends[1].BytesOut != 3<<30 {
		t.Fatalf("Services = %+v, %v", svcs, err)
	}
	svc, err := c.Service(ctx, "api")
	if err != nil || svc.Mode != "dnat" || len(svc.Ports) != 1 || svc.Ports[0] != 8000 {
		t.Fatalf("Service(api) = %+v, %v", svc, err)
	}
	bes, err := c.Backends(ctx, "web")
	if err != nil || len(bes) != 2 || bes[0] != f.Services()[0].Backends[0] {
		t.Fatalf("Backends(web) = %+v, %v", bes, err)
	}

	be, err := c.AddBackend(ctx, "web", netip.MustParseAddrPort("198.18.0.23:8080"), 4)
	if err != nil || be.Address != "198.18.0.23:8080" || be.Weight != 4 || be.State != api.StateReady {
		t.Fatalf("AddBackend = %+v, %v", be, err)
	}
	be, err = c.AddBackend(ctx, "web", netip.AddrPortFrom(netip.MustParseAddr("198.18.0.24"), 0), 1)
	if err != nil || be.Address != "198.18.0.24" {
		t.Fatalf("AddBackend without port = %+v, %v", be, err)
	}
	if be, err = c.SetWeight(ctx, "web", web21, 0); err != nil || be.Weight != 0 {
		t.Fatalf("SetWeight = %+v, %v", be, err)
	}
	if be, err = c.SetState(ctx, "web", web21, api.StateDrain); err != nil || be.State != api.StateDrain {
		t.Fatalf("SetState = %+v, %v", be, err)
	}
	if be, err = c.RemoveBackend(ctx, "web", web21); err != nil || be.Address != "198.18.0.21:8080" || be.Active != 2 {
		t.Fatalf("RemoveBackend = %+v, %v", be, err)
	}
	if st, err = c.Reload(ctx); err != nil || st.Services != 2 || f.Reloads() != 1 {
		t.Fatalf("Reload = %+v, %v (reloads %d)", st, err, f.Reloads())
	}
	want := []string{
		"AddBackend web 198.18.0.23:8080 4", "AddBackend web 198.18.0.24 1",
		"SetWeight web 198.18.0.21:8080 0", "SetState web 198.18.0.21:8080 drain",
		"RemoveBackend web 198.18.0.21:8080", "Reload",
	}
	if got := f.Calls(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("calls %q, want %q", got, want)
	}
}

// TestClientFlowPages walks the flow table page by page, as ctl does.
func TestClientFlowPages(t *testing.T) {
	ctx := context.Background()
	c, _ := serve(t, apitest.Sample())
	var clients []string
	pages := 0
	for off := 0; off >= 0 && pages < 10; pages++ {
		p, err := c.Flows(ctx, api.FlowFilter{}, off, 2)
		if err != nil {
			t.Fatal(err)
		}
		if p.Total != 3 || p.Offset != off {
			t.Fatalf("page at %d: %+v", off, p)
		}
		for _, fl := range p.Flows {
			clients = append(clients, fl.Client)
		}
		off = p.Next
	}
	if pages != 2 || strings.Join(clients, " ") != "198.18.1.10:40000 198.18.1.10:40001 198.18.1.10:40002" {
		t.Fatalf("%d pages, clients %q", pages, clients)
	}
	p, err := c.Flows(ctx, api.FlowFilter{Service: "web", Backend: "198.18.0.22:8080"}, 0, 0)
	if err != nil || p.Total != 1 || p.Flows[0].Client != "198.18.1.10:40002" {
		t.Fatalf("filtered: %+v, %v", p, err)
	}
}

// TestClientErrors: the daemon's refusals come back as the sentinels, with
// its one-line message.
func TestClientErrors(t *testing.T) {
	ctx := context.Background()
	f := apitest.Sample()
	c, _ := serve(t, f)
	cases := []struct {
		name string
		call func() error
		is   error
		code int
		msg  string
	}{
		{"unknown service", func() error { _, err := c.Backends(ctx, "nope"); return err }, api.ErrNotFound, 404, `service "nope": not found`},
		{"unknown backend", func() error {
			_, err := c.SetState(ctx, "web", netip.MustParseAddrPort("198.18.0.99:80"), api.StateDrain)
			return err
		}, api.ErrNotFound, 404, `service "web": backend 198.18.0.99:80: not found`},
		{"duplicate", func() error {
			_, err := c.AddBackend(ctx, "web", netip.MustParseAddrPort("198.18.0.21:8080"), 1)
			return err
		}, api.ErrExists, 409, `service "web": backend 198.18.0.21:8080: already exists`},
		{"bad state", func() error {
			_, err := c.SetState(ctx, "web", netip.MustParseAddrPort("198.18.0.21:8080"), "off")
			return err
		}, api.ErrInvalid, 400, `body: state "off": want ready, drain or maint: invalid`},
		{"bad weight", func() error {
			_, err := c.SetWeight(ctx, "web", netip.MustParseAddrPort("198.18.0.21:8080"), 1<<16)
			return err
		}, api.ErrInvalid, 400, "body: weight 65536: want 0..65535: invalid"},
		{"bad limit", func() error { _, err := c.Flows(ctx, api.FlowFilter{}, 0, 20000); return err }, api.ErrInvalid, 400, `query: limit "20000": want an integer 1..10000`},
		{"internal", func() error {
			f.FailNext("Reload", errors.New("config: /etc/l4raw.yaml:3: services[0].vip: missing"))
			_, err := c.Reload(ctx)
			return err
		}, nil, 500, "config: /etc/l4raw.yaml:3: services[0].vip: missing"},
	}
	for _, k := range cases {
		err := k.call()
		var ae *api.Error
		if !errors.As(err, &ae) || ae.StatusCode != k.code || err.Error() != k.msg {
			t.Errorf("%s: error %#v (%v), want HTTP %d %q", k.name, err, err, k.code, k.msg)
			continue
		}
		if k.is != nil && !errors.Is(err, k.is) {
			t.Errorf("%s: %v is not %v", k.name, err, k.is)
		}
		if errors.Is(err, api.ErrUnreachable) {
			t.Errorf("%s: an answer from the daemon counts as unreachable", k.name)
		}
	}
	if len(f.Calls()) != 0 {
		t.Errorf("refused calls were recorded: %q", f.Calls())
	}
}

// TestClientUnreachable: with no daemon the error says so in one line and
// matches ErrUnreachable.
func TestClientUnreachable(t *testing.T) {
	c, stop := serve(t, apitest.Sample())
	ctx := context.Background()
	if _, err := c.Status(ctx); err != nil {
		t.Fatal(err)
	}
	stop()
	_, err := c.Status(ctx)
	if !errors.Is(err, api.ErrUnreachable) || err.Error() != "no l4raw API at apitest: connection refused" {
		t.Fatalf("error %q, want ErrUnreachable: %q", err, "no l4raw API at apitest: connection refused")
	}
	if err := c.Healthz(ctx); !errors.Is(err, api.ErrUnreachable) {
		t.Fatalf("Healthz: %v", err)
	}
}

// TestClientNotL4raw: something else answering at the address is not taken
// for the API.
func TestClientNotL4raw(t *testing.T) {
	l := apitest.NewPipeListener()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(404)
		w.Write([]byte("<html>nothing here</html>"))
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	c := api.NewClient("http://apitest/", api.WithHTTPClient(l.HTTPClient()))
	_, err := c.Status(context.Background())
	want := "no l4raw API at apitest: GET /api/v1/status answered with HTTP 404 (text/html)"
	if !errors.Is(err, api.ErrUnreachable) || err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
}

// TestServeStops: Serve returns nil when its context ends, with a request
// in flight answered first.
func TestServeStops(t *testing.T) {
	l := apitest.NewPipeListener()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.NewServer(apitest.Sample(), nil).Serve(ctx, l) }()
	c := api.NewClient("apitest", api.WithHTTPClient(l.HTTPClient()))
	if err := c.Healthz(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return within 10 s")
	}
	if _, err := l.Accept(); err == nil {
		t.Fatal("listener still open after Serve returned")
	}
}
