package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/l4raw/l4raw/pkg/forward"
	"github.com/l4raw/l4raw/pkg/packet"
)

// printCounters writes every counter, one "name value" per line (names as
// the metrics will have them), then one line per backend. It runs at exit
// and on SIGUSR1.
func (d *daemon) printCounters() {
	var b strings.Builder
	writeCounters(&b, d)
	io.WriteString(d.out, b.String())
}

func writeCounters(w io.Writer, d *daemon) {
	c := d.eng.Stats()
	tb := d.eng.Table()
	fmt.Fprintln(w, "== l4raw counters ==")
	line := func(name string, v any) { fmt.Fprintf(w, "%-28s %v\n", name, v) }
	line("rx_frames", c.RxFrames)
	line("rx_bytes", c.RxBytes)
	line("tx_frames", c.TxFrames)
	line("tx_bytes", c.TxBytes)
	line("conns_new", c.NewConns)
	line("conns_reopened", c.Reopened)
	line("conns_in_table", tb.Len())
	line("conns_limit", tb.Cap())
	line("rst_sent", c.RSTSent)
	line("nat_early_reuse", c.NATEarlyReuse)
	for i := 0; i < forward.NumDrops; i++ {
		line("drop_"+forward.DropName(i), c.Drops[i])
	}
	for r := packet.Reason(1); r < packet.NumReasons; r++ {
		line("malformed_"+r.String(), c.Malformed[r])
	}
	var trunc, kdrops, txerr uint64
	for _, l := range d.lanes {
		trunc += l.rx.Truncated.Load()
		txerr += l.tx.Errors.Load()
		if _, dr, err := l.rx.KernelStats(); err == nil {
			kdrops += dr
		}
	}
	line("socket_truncated", trunc)
	line("socket_kernel_drops", kdrops)
	line("socket_tx_errors", txerr)
	for _, be := range d.eng.Backends() {
		s := be.Stats()
		state := "down"
		if be.Up() {
			state = "up"
		}
		fmt.Fprintf(w, "backend %s %s conns=%d active=%d pkts_in=%d bytes_in=%d pkts_out=%d bytes_out=%d nat_ports=%d\n",
			be.Addr, state, s.Conns, be.Active(), s.PktsIn, s.BytesIn, s.PktsOut, s.BytesOut, be.NATPortsInUse())
	}
}
