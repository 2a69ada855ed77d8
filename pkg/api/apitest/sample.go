package apitest

import (
	"fmt"
	"time"

	"github.com/l4raw/l4raw/pkg/api"
)

// SampleStartedAt returns when the Sample daemon started.
func SampleStartedAt() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }

// Sample returns a Fake with two services and a few flows, the same every
// time, for golden outputs. Addresses are from 198.18.0.0/15 (RFC 2544).
func Sample() *Fake {
	st := api.Status{
		Version: "v1.2.3", Commit: "abc1234", StartedAt: SampleStartedAt(),
		Conns: 3, ConnLimit: 1048576,
		Counters: map[string]uint64{
			"rx_frames": 1000, "rx_bytes": 1500000, "tx_frames": 990, "tx_bytes": 1400000,
			"conns_new": 40, "conns_reopened": 1, "conns_in_table": 3, "conns_limit": 1048576,
			"rst_sent": 2, "nat_early_reuse": 0,
			"drop_no_flow": 5, "drop_no_flow_reply": 0, "drop_no_backend": 2, "drop_table_full": 0,
			"drop_nat_exhausted": 0, "drop_no_next_hop": 1, "drop_no_interface": 0,
			"malformed_runt": 3, "malformed_not_tcp": 0,
			"socket_truncated": 0, "socket_kernel_drops": 7, "socket_tx_errors": 0,
		},
	}
	svcs := []api.ServiceInfo{
		{
			Name: "web", VIP: "198.18.0.100", Ports: []uint16{80, 443}, Mode: "fullnat", Scheduler: "rr",
			Backends: []api.BackendInfo{
				{Service: "web", Address: "198.18.0.21:8080", Weight: 1, State: api.StateReady, Health: api.HealthUp,
					HealthReason: "connected", CheckLatency: 0.000412, Active: 2, Established: 1, Conns: 30,
					PktsIn: 600, BytesIn: 48000, PktsOut: 590, BytesOut: 5 << 20, NATPorts: 2},
				{Service: "web", Address: "198.18.0.22:8080", Weight: 2, State: api.StateDrain, Health: api.HealthDown,
					HealthReason: "connection refused", CheckLatency: 0.0011, Active: 1, Conns: 10,
					PktsIn: 300, BytesIn: 1536, PktsOut: 290, BytesOut: 3 << 30, NATPorts: 1},
			},
		},
		{
			Name: "api", VIP: "198.18.0.101", Ports: []uint16{8000}, Mode: "dnat", Scheduler: "rr",
			Backends: []api.BackendInfo{
				{Service: "api", Address: "198.18.0.31:9000", Weight: 1, State: api.StateMaint, Health: api.HealthUnknown},
			},
		},
	}
	var flows []api.FlowInfo
	for i := range 3 {
		be, snat := "198.18.0.21:8080", fmt.Sprintf("198.18.0.2:%d", 61000+i)
		if i == 2 {
			be = "198.18.0.22:8080"
		}
		flows = append(flows, api.FlowInfo{
			Service: "web", Client: fmt.Sprintf("198.18.1.10:%d", 40000+i), VIP: "198.18.0.100:80",
			Backend: be, SNAT: snat, State: "ESTABLISHED", IdleSeconds: float64(i) + 0.5,
		})
	}
	return New(st, svcs, flows)
}
