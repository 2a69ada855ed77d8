//go:build linux

package arp_test

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"

	"github.com/l4raw/l4raw/pkg/arp"
	"github.com/l4raw/l4raw/pkg/neigh"
)

// The daemon's sequence for a VIP that is no local address but lies in a
// connected subnet of link: probe, then answer and announce until ctx ends.
func Example() {
	ctx := context.Background()
	log := slog.Default()
	link := neigh.Link{Index: 2, Name: "eth0", MAC: [6]byte{0x02, 0, 0, 0, 0, 1}}
	vip := netip.MustParseAddr("198.18.5.100")

	sock, err := arp.Listen(link.Index, vip)
	if err != nil {
		log.Error("cannot listen for ARP", "err", err)
		os.Exit(1)
	}
	claim, err := arp.NewClaim(sock, link, vip, log)
	if err != nil {
		log.Error("cannot claim the VIP", "err", err)
		os.Exit(1)
	}
	defer claim.Close()
	if err := claim.Probe(ctx); err != nil {
		var ce *arp.ConflictError
		if errors.As(err, &ce) {
			log.Error("the VIP is taken", "err", err) // names the other host's MAC
			os.Exit(2)
		}
		log.Error("probe failed", "err", err)
		os.Exit(1)
	}
	go claim.Announce(ctx)
	if err := claim.Serve(ctx); err != nil {
		log.Error("ARP responder stopped", "err", err)
	}
}
