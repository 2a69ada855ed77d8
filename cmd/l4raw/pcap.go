package main

import (
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/l4raw/l4raw/pkg/capture"
)

// pcapFlags are --pcap, --pcap-match and --pcap-snaplen.
type pcapFlags struct {
	file  string
	match string
	snap  int
	addrs []netip.Addr
}

func (p *pcapFlags) check() error {
	if p.file == "" {
		if p.match != "" || p.snap != 0 {
			return fmt.Errorf("--pcap-match and --pcap-snaplen need --pcap FILE")
		}
		return nil
	}
	if p.snap < 0 {
		return fmt.Errorf("--pcap-snaplen %d: must not be negative", p.snap)
	}
	for _, s := range strings.Split(p.match, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return fmt.Errorf("--pcap-match %q: want IPv4 addresses", s)
		}
		p.addrs = append(p.addrs, a)
	}
	return nil
}

// startCapture opens the capture file and taps the engine; the returned
// function stops it.
func (d *daemon) startCapture() (stop func(), err error) {
	if d.pcap.file == "" {
		return func() {}, nil
	}
	f, err := os.OpenFile(d.pcap.file, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, usagef("--pcap %q: %v", d.pcap.file, err)
	}
	names := map[int]string{}
	for _, i := range d.plan.ifaces {
		names[i.Index] = i.Name
	}
	w, err := capture.New(f, names, d.pcap.addrs, d.pcap.snap, d.log)
	if err != nil {
		f.Close()
		return nil, err
	}
	d.eng.SetTap(w)
	d.log.Info("capturing frames", "file", d.pcap.file, "match", d.pcap.match)
	return func() {
		d.eng.SetTap(nil)
		w.Close()
		f.Close()
		d.log.Info("capture written", "file", d.pcap.file, "frames", w.Written.Load(), "dropped", w.Dropped.Load())
	}, nil
}
