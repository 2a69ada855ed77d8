package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/l4raw/l4raw/pkg/forward"
	"github.com/l4raw/l4raw/pkg/packet"
)

type counter struct {
	name  string
	value uint64
}

// counters returns every daemon counter under the name the counter dump,
// the API and the metrics use.
func (d *daemon) counters() []counter {
	c := d.eng.Stats()
	tb := d.eng.Table()
	out := []counter{
		{"rx_frames", c.RxFrames}, {"rx_bytes", c.RxBytes}, {"tx_frames", c.TxFrames}, {"tx_bytes", c.TxBytes},
		{"conns_new", c.NewConns}, {"conns_reopened", c.Reopened},
		{"conns_in_table", uint64(tb.Len())}, {"conns_limit", uint64(tb.Cap())},
		{"rst_sent", c.RSTSent}, {"nat_early_reuse", c.NATEarlyReuse}, {"nat_takeover", c.NATTakeover},
	}
	for i := 0; i < forward.NumDrops; i++ {
		out = append(out, counter{"drop_" + forward.DropName(i), c.Drops[i]})
	}
	for r := packet.Reason(1); r < packet.NumReasons; r++ {
		out = append(out, counter{"malformed_" + r.String(), c.Malformed[r]})
	}
	var trunc, kdrops, txerr uint64
	for _, l := range d.allLanes() {
		trunc += l.rx.Truncated.Load()
		txerr += l.tx.Errors.Load()
		if _, dr, err := l.rx.KernelStats(); err == nil {
			kdrops += dr
		}
	}
	return append(out, counter{"socket_truncated", trunc}, counter{"socket_kernel_drops", kdrops}, counter{"socket_tx_errors", txerr})
}

// printCounters writes every counter, one "name value" per line, then one
// line per backend. It runs at exit and on SIGUSR1.
func (d *daemon) printCounters() {
	var b strings.Builder
	fmt.Fprintln(&b, "== l4raw counters ==")
	for _, c := range d.counters() {
		fmt.Fprintf(&b, "%-28s %d\n", c.name, c.value)
	}
	for _, be := range d.eng.Backends() {
		s := be.Stats()
		state := "down"
		if be.Up() {
			state = "up"
		}
		fmt.Fprintf(&b, "backend %s %s conns=%d active=%d pkts_in=%d bytes_in=%d pkts_out=%d bytes_out=%d nat_ports=%d\n",
			be.Addr, state, s.Conns, be.Active(), s.PktsIn, s.BytesIn, s.PktsOut, s.BytesOut, be.NATPortsInUse())
	}
	io.WriteString(d.out, b.String())
}
