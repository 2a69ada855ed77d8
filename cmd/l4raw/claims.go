package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/l4raw/l4raw/pkg/arp"
	"github.com/l4raw/l4raw/pkg/neigh"
)

// vipClaim is a free LAN address l4raw answers ARP for.
type vipClaim struct {
	c      *arp.Claim
	cancel context.CancelFunc
	done   sync.WaitGroup
}

// probeClaims probes every VIP of claims that is not claimed yet (RFC 5227)
// and returns them ready to serve. Another host using one is a usageError
// naming its MAC.
func (d *daemon) probeClaims(ctx context.Context, claims map[netip.Addr]neigh.Link) (map[netip.Addr]*arp.Claim, error) {
	out := map[netip.Addr]*arp.Claim{}
	fail := func(err error) (map[netip.Addr]*arp.Claim, error) {
		for _, c := range out {
			c.Close()
		}
		return nil, err
	}
	for vip, link := range claims {
		if _, ok := d.claims[vip]; ok {
			continue
		}
		conn, err := arp.Listen(link.Index, vip)
		if err != nil {
			return fail(permErr("ARP socket on "+link.Name, "CAP_NET_RAW", err))
		}
		c, err := arp.NewClaim(conn, link, vip, d.log)
		if err != nil {
			conn.Close()
			return fail(fmt.Errorf("claim VIP %s on %s: %w", vip, link.Name, err))
		}
		out[vip] = c
		if err := c.Probe(ctx); err != nil {
			var ce *arp.ConflictError
			if errors.As(err, &ce) {
				return fail(usagef("VIP %s is in use on %s by %s: pick a free address", vip, link.Name, macString(ce.MAC)))
			}
			return fail(fmt.Errorf("probe VIP %s on %s: %w", vip, link.Name, err))
		}
	}
	return out, nil
}

// serveClaims starts answering ARP for probed claims and announces them.
// The caller holds d.mu.
func (d *daemon) serveClaims(probed map[netip.Addr]*arp.Claim) {
	for vip, c := range probed {
		ctx, cancel := context.WithCancel(context.Background())
		vc := &vipClaim{c: c, cancel: cancel}
		vc.done.Add(2)
		go func() {
			defer vc.done.Done()
			if err := c.Serve(ctx); err != nil {
				d.log.Error("stopped answering ARP for VIP", "vip", vip, "err", err)
			}
		}()
		go func() {
			defer vc.done.Done()
			_ = c.Announce(ctx)
		}()
		d.claims[vip] = vc
		d.log.Info("claimed VIP: answering ARP for it", "vip", vip)
	}
}

// dropClaims stops answering ARP for claimed VIPs not in keep (all with
// nil). The caller holds d.mu.
func (d *daemon) dropClaims(keep map[netip.Addr]neigh.Link) {
	for vip, vc := range d.claims {
		if _, ok := keep[vip]; ok {
			continue
		}
		vc.cancel()
		vc.c.Close()
		vc.done.Wait()
		delete(d.claims, vip)
		d.log.Info("released VIP: no longer answering ARP for it", "vip", vip)
	}
}
