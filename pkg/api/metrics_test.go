package api_test

import (
	"io"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/l4raw/l4raw/pkg/api"
	"github.com/l4raw/l4raw/pkg/api/apitest"
)

// TestCollectorGolden compares every metric of the Sample daemon with
// testdata/sample.prom (written from the Sample fake and checked by hand:
// one series per daemon counter, per backend and direction).
func TestCollectorGolden(t *testing.T) {
	want, err := os.Open("testdata/sample.prom")
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	if err := testutil.CollectAndCompare(api.NewCollector(apitest.Sample()), want); err != nil {
		t.Fatal(err)
	}
}

// TestCollectorLint: names, units, _total suffixes and help texts follow
// the Prometheus conventions, as promlint checks them.
func TestCollectorLint(t *testing.T) {
	problems, err := testutil.CollectAndLint(api.NewCollector(apitest.Sample()))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	// The whole /metrics page, with the Go and process collectors.
	srv := api.NewServer(apitest.Sample(), nil)
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	page := rec.Body.String()
	problems, err = promlint.New(strings.NewReader(page)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "l4raw_") {
			t.Errorf("/metrics: %s: %s", p.Metric, p.Text)
		}
	}
	for _, name := range []string{"l4raw_backend_up{", "go_goroutines ", "process_start_time_seconds "} {
		if !strings.Contains(page, name) {
			t.Errorf("/metrics has no %s", name)
		}
	}
}

// TestCollectorEdges: a counter the exporter does not know still shows up;
// an unset start time is left out; the pedantic registry accepts what
// Collect sends for what Describe declared.
func TestCollectorEdges(t *testing.T) {
	f := apitest.New(api.Status{Version: "dev", Commit: "unknown", Counters: map[string]uint64{
		"future_counter": 9, "drop_": 1, "drop_new_reason": 4, "malformed_new_reason": 2, "conns_in_table": 5,
	}}, nil, nil)
	c := api.NewCollector(f)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP l4raw_counter A daemon counter this exporter has no metric of its own for, by its name.
# TYPE l4raw_counter untyped
l4raw_counter{name="drop_"} 1
l4raw_counter{name="future_counter"} 9
# HELP l4raw_drops_total Frames the balancer dropped, by reason.
# TYPE l4raw_drops_total counter
l4raw_drops_total{reason="new_reason"} 4
# HELP l4raw_malformed_frames_total Frames the parser refused, by reason.
# TYPE l4raw_malformed_frames_total counter
l4raw_malformed_frames_total{reason="new_reason"} 2
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "l4raw_counter", "l4raw_drops_total", "l4raw_malformed_frames_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(c, "l4raw_start_time_seconds"); n != 0 {
		t.Errorf("zero start time exported (%d series)", n)
	}
	// build info, services, entries, limit and 4 counters (conns_in_table
	// is Status.Conns, already exported)
	if n := testutil.CollectAndCount(c); n != 8 {
		t.Errorf("%d series, want 8", n)
	}
}

// TestCollectorReadsAtScrape: values come from the Controller at each
// scrape, not from a copy taken at registration.
func TestCollectorReadsAtScrape(t *testing.T) {
	f := apitest.Sample()
	c := api.NewCollector(f)
	weights := func(w string) io.Reader {
		return strings.NewReader(`
# HELP l4raw_backend_weight Scheduler weight of the backend (0: no new connections).
# TYPE l4raw_backend_weight gauge
l4raw_backend_weight{backend="198.18.0.21:8080",service="web"} 1
l4raw_backend_weight{backend="198.18.0.22:8080",service="web"} ` + w + `
l4raw_backend_weight{backend="198.18.0.31:9000",service="api"} 1
`)
	}
	if err := testutil.CollectAndCompare(c, weights("2"), "l4raw_backend_weight"); err != nil {
		t.Fatal(err)
	}
	if err := f.SetWeight("web", netip.MustParseAddrPort("198.18.0.22:8080"), 7); err != nil {
		t.Fatal(err)
	}
	if err := testutil.CollectAndCompare(c, weights("7"), "l4raw_backend_weight"); err != nil {
		t.Fatal(err)
	}
}
