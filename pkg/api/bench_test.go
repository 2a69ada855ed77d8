package api_test

import (
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/l4raw/l4raw/pkg/api"
	"github.com/l4raw/l4raw/pkg/api/apitest"
)

// bigFake has 100 services of 10 backends each and 10,000 flows.
func bigFake() *apitest.Fake {
	st := apitest.Sample().Status()
	var svcs []api.ServiceInfo
	for s := range 100 {
		svc := api.ServiceInfo{Name: fmt.Sprintf("svc-%d", s), VIP: fmt.Sprintf("198.18.1.%d", s), Ports: []uint16{80}, Mode: "fullnat", Scheduler: "rr"}
		for b := range 10 {
			svc.Backends = append(svc.Backends, api.BackendInfo{
				Service: svc.Name, Address: fmt.Sprintf("198.19.%d.%d:8080", s, b), Weight: 1, State: api.StateReady,
				Health: api.HealthUp, HealthReason: "connected", CheckLatency: 0.0004, Active: 100, Conns: 123456,
				PktsIn: 1 << 30, BytesIn: 1 << 40, PktsOut: 1 << 30, BytesOut: 1 << 42, NATPorts: 100,
			})
		}
		svcs = append(svcs, svc)
	}
	var flows []api.FlowInfo
	for i := range api.MaxFlowLimit {
		flows = append(flows, api.FlowInfo{
			Service: "svc-1", Client: fmt.Sprintf("198.18.%d.%d:%d", 200+i/60000, i%250, 1024+i%60000), VIP: "198.18.1.1:80",
			Backend: "198.19.1.1:8080", SNAT: fmt.Sprintf("198.18.0.2:%d", 61000+i%4536), State: "ESTABLISHED", IdleSeconds: 12.345,
		})
	}
	return apitest.New(st, svcs, flows)
}

// BenchmarkScrape is one /metrics scrape of a 1,000-backend daemon.
func BenchmarkScrape(b *testing.B) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(api.NewCollector(bigFake()))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFlowsPage is one full page (10,000 flows) through the server.
func BenchmarkFlowsPage(b *testing.B) {
	h := api.NewServer(bigFake(), nil)
	b.ReportAllocs()
	var size int
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/flows?limit=10000", nil))
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
		size = rec.Body.Len()
	}
	b.ReportMetric(float64(size), "bytes/page")
	b.ReportMetric(float64(size)/api.MaxFlowLimit, "bytes/flow")
}

// BenchmarkMetricsPage is the whole /metrics answer, text format.
func BenchmarkMetricsPage(b *testing.B) {
	h := api.NewServer(bigFake(), nil)
	var size int
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		size = rec.Body.Len()
	}
	b.ReportMetric(float64(size), "bytes/page")
}
