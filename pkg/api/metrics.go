package api

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports a Controller's state to Prometheus. It reads Status and
// Services once per scrape and builds constant metrics from them: the data
// path only counts, in its own atomics, and never calls Prometheus.
type Collector struct {
	c Controller

	buildInfo, startTime, services, serviceInfo *prometheus.Desc
	entries, entriesLimit                       *prometheus.Desc
	frames, bytes                               *prometheus.Desc
	drops, malformed                            *prometheus.Desc
	other                                       *prometheus.Desc
	counters                                    map[string]counterMetric // by daemon counter name

	beUp, beCheck, beWeight, beState                      *prometheus.Desc
	beActive, beEstab, beConns, bePackets, beBytes, beNAT *prometheus.Desc
}

// counterMetric is where one of the daemon's named counters goes.
type counterMetric struct {
	desc  *prometheus.Desc
	label string // the direction label's value, if desc has one
}

// Daemon counters with a metric of their own; drop_* and malformed_* go to
// l4raw_drops_total and l4raw_malformed_frames_total by reason. conns_in_table
// and conns_limit are Status.Conns and Status.ConnLimit.
const (
	dropPrefix      = "drop_"
	malformedPrefix = "malformed_"
)

// NewCollector returns a Collector for c. Register it with a
// prometheus.Registry; NewServer does.
func NewCollector(c Controller) *Collector {
	be := []string{"service", "backend"}
	k := &Collector{
		c:            c,
		buildInfo:    prometheus.NewDesc("l4raw_build_info", "Always 1; the labels say which l4raw runs.", []string{"version", "commit"}, nil),
		startTime:    prometheus.NewDesc("l4raw_start_time_seconds", "When the daemon started, in seconds since the Unix epoch.", nil, nil),
		services:     prometheus.NewDesc("l4raw_services", "Services (VIPs) configured.", nil, nil),
		serviceInfo:  prometheus.NewDesc("l4raw_service_info", "Always 1; one per service, labelled with its VIP, mode and scheduler.", []string{"service", "vip", "mode", "scheduler"}, nil),
		entries:      prometheus.NewDesc("l4raw_conntrack_entries", "Connections in the connection table.", nil, nil),
		entriesLimit: prometheus.NewDesc("l4raw_conntrack_entries_limit", "Capacity of the connection table (--max-conns); new SYNs are dropped beyond it.", nil, nil),
		frames:       prometheus.NewDesc("l4raw_frames_total", "Frames handled by the data path, by direction (rx received, tx sent).", []string{"direction"}, nil),
		bytes:        prometheus.NewDesc("l4raw_bytes_total", "Bytes of the frames handled by the data path, by direction (rx received, tx sent).", []string{"direction"}, nil),
		drops:        prometheus.NewDesc("l4raw_drops_total", "Frames the balancer dropped, by reason.", []string{"reason"}, nil),
		malformed:    prometheus.NewDesc("l4raw_malformed_frames_total", "Frames the parser refused, by reason.", []string{"reason"}, nil),
		other:        prometheus.NewDesc("l4raw_counter", "A daemon counter this exporter has no metric of its own for, by its name.", []string{"name"}, nil),

		beUp:      prometheus.NewDesc("l4raw_backend_up", "1 if the backend's last active checks passed, 0 if they failed or it is not checked.", be, nil),
		beCheck:   prometheus.NewDesc("l4raw_backend_check_duration_seconds", "Duration of the backend's last active check.", be, nil),
		beWeight:  prometheus.NewDesc("l4raw_backend_weight", "Scheduler weight of the backend (0: no new connections).", be, nil),
		beState:   prometheus.NewDesc("l4raw_backend_state", "1 for the backend's administrative state (ready, drain, maint), 0 for the others.", append(be, "state"), nil),
		beActive:  prometheus.NewDesc("l4raw_backend_active_connections", "Connections to the backend in the connection table.", be, nil),
		beEstab:   prometheus.NewDesc("l4raw_backend_established_connections", "Connections to the backend in the connection table that are ESTABLISHED.", be, nil),
		beConns:   prometheus.NewDesc("l4raw_backend_connections_total", "Connections scheduled to the backend.", be, nil),
		bePackets: prometheus.NewDesc("l4raw_backend_packets_total", "Packets forwarded for the backend's connections, by direction (in: client to backend, out: backend to client).", append(be, "direction"), nil),
		beBytes:   prometheus.NewDesc("l4raw_backend_bytes_total", "Bytes forwarded for the backend's connections, by direction (in: client to backend, out: backend to client).", append(be, "direction"), nil),
		beNAT:     prometheus.NewDesc("l4raw_backend_nat_ports_in_use", "NAT source ports held by the backend's connections (full NAT).", be, nil),
	}
	plain := func(name, help string) counterMetric {
		return counterMetric{desc: prometheus.NewDesc(name, help, nil, nil)}
	}
	k.counters = map[string]counterMetric{
		"rx_frames":           {k.frames, "rx"},
		"tx_frames":           {k.frames, "tx"},
		"rx_bytes":            {k.bytes, "rx"},
		"tx_bytes":            {k.bytes, "tx"},
		"conns_new":           plain("l4raw_connections_total", "Connections created in the connection table."),
		"conns_reopened":      plain("l4raw_connections_reopened_total", "SYNs on a closed connection that started a new one."),
		"rst_sent":            plain("l4raw_rst_sent_total", "SYNs the balancer answered with a RST itself because no backend was up."),
		"nat_early_reuse":     plain("l4raw_nat_early_reuse_total", "NAT ports reused during their TIME_WAIT quarantine because no other was free."),
		"socket_truncated":    plain("l4raw_socket_truncated_frames_total", "Frames longer than the receive buffer, dropped."),
		"socket_kernel_drops": plain("l4raw_socket_kernel_drops_total", "Frames the kernel dropped because a receive socket's queue was full."),
		"socket_tx_errors":    plain("l4raw_socket_tx_errors_total", "Frames the kernel refused to send."),
		"conns_in_table":      {},
		"conns_limit":         {},
	}
	return k
}

// Describe implements prometheus.Collector.
func (k *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		k.buildInfo, k.startTime, k.services, k.serviceInfo, k.entries, k.entriesLimit,
		k.frames, k.bytes, k.drops, k.malformed, k.other,
		k.beUp, k.beCheck, k.beWeight, k.beState, k.beActive, k.beEstab, k.beConns, k.bePackets, k.beBytes, k.beNAT,
	} {
		ch <- d
	}
	for _, m := range k.counters {
		if m.desc != nil && m.label == "" {
			ch <- m.desc
		}
	}
}

// Collect implements prometheus.Collector.
func (k *Collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}

	st := k.c.Status()
	gauge(k.buildInfo, 1, st.Version, st.Commit)
	if !st.StartedAt.IsZero() {
		gauge(k.startTime, float64(st.StartedAt.UnixNano())/1e9)
	}
	gauge(k.services, float64(st.Services))
	gauge(k.entries, float64(st.Conns))
	gauge(k.entriesLimit, float64(st.ConnLimit))
	for name, v := range st.Counters {
		if m, ok := k.counters[name]; ok {
			switch {
			case m.desc == nil: // exported from another field
			case m.label != "":
				counter(m.desc, v, m.label)
			default:
				counter(m.desc, v)
			}
			continue
		}
		switch {
		case strings.HasPrefix(name, dropPrefix) && len(name) > len(dropPrefix):
			counter(k.drops, v, name[len(dropPrefix):])
		case strings.HasPrefix(name, malformedPrefix) && len(name) > len(malformedPrefix):
			counter(k.malformed, v, name[len(malformedPrefix):])
		default:
			ch <- prometheus.MustNewConstMetric(k.other, prometheus.UntypedValue, float64(v), name)
		}
	}

	for _, svc := range k.c.Services() {
		gauge(k.serviceInfo, 1, svc.Name, svc.VIP, svc.Mode, svc.Scheduler)
		for _, b := range svc.Backends {
			l := []string{svc.Name, b.Address}
			up := 0.0
			if b.Health == HealthUp {
				up = 1
			}
			gauge(k.beUp, up, l...)
			gauge(k.beCheck, b.CheckLatency, l...)
			gauge(k.beWeight, float64(b.Weight), l...)
			for _, s := range []string{StateReady, StateDrain, StateMaint} {
				v := 0.0
				if b.State == s {
					v = 1
				}
				gauge(k.beState, v, svc.Name, b.Address, s)
			}
			gauge(k.beActive, float64(b.Active), l...)
			gauge(k.beEstab, float64(b.Established), l...)
			counter(k.beConns, b.Conns, l...)
			counter(k.bePackets, b.PktsIn, svc.Name, b.Address, "in")
			counter(k.bePackets, b.PktsOut, svc.Name, b.Address, "out")
			counter(k.beBytes, b.BytesIn, svc.Name, b.Address, "in")
			counter(k.beBytes, b.BytesOut, svc.Name, b.Address, "out")
			gauge(k.beNAT, float64(b.NATPorts), l...)
		}
	}
}
