package main

import (
	"fmt"
	"net/netip"
	"os"
	"slices"

	"github.com/l4raw/l4raw/pkg/config"
	"github.com/l4raw/l4raw/pkg/datapath"
	"github.com/l4raw/l4raw/pkg/firewall"
	"github.com/l4raw/l4raw/pkg/forward"
	"github.com/l4raw/l4raw/pkg/health"
	"github.com/l4raw/l4raw/pkg/neigh"
	"github.com/l4raw/l4raw/pkg/packet"
)

// plan is the environment-dependent part of the set-up, worked out before
// anything is changed.
type plan struct {
	ifaces    []forward.Iface
	snat      []netip.Addr
	natPorts  packet.PortRange
	local     []netip.Addr // the host's own addresses toward the backends
	setup     forward.Setup
	guard     firewall.Spec
	filter    datapath.FilterSpec
	endpoints map[int][]netip.AddrPort // health target ID -> backend endpoints it covers
	targets   []health.Target
	passive   map[int]int               // health target ID -> passive threshold (0: off)
	backends  []netip.Addr              // distinct backend addresses, for next hops
	localSNAT map[netip.Addr]netip.Addr // backends on this host -> the SNAT address they use
	claims    map[netip.Addr]neigh.Link // VIPs l4raw answers ARP for, and where
}

// makePlan works out, from the spec and the host's addresses and routes,
// which interfaces to use, the SNAT addresses, the NAT ports, the guard and
// filter rules and the health targets. It changes nothing; every problem
// the user must fix is a usageError.
func (d *daemon) makePlan(spec config.Spec) (plan, error) {
	var p plan
	ifaces := map[int]forward.Iface{}
	var order []int
	addIface := func(l neigh.Link) {
		if _, ok := ifaces[l.Index]; !ok {
			ifaces[l.Index] = forward.Iface{Index: l.Index, Name: l.Name, MAC: l.MAC}
			order = append(order, l.Index)
		}
	}
	explicit := len(spec.Interfaces) > 0
	for _, name := range spec.Interfaces {
		l, err := d.res.LinkByName(name)
		if err != nil {
			return p, usagef("--iface %q: no such interface", name)
		}
		addIface(l)
	}

	fullNAT := false
	seenBackend := map[netip.Addr]bool{}
	p.localSNAT = map[netip.Addr]netip.Addr{}
	p.claims = map[netip.Addr]neigh.Link{}
	var firstBackend netip.Addr
	for _, s := range spec.Services {
		link, claim, err := d.vipLink(spec, s.VIP)
		if err != nil {
			return p, err
		}
		if claim {
			p.claims[s.VIP] = link
		}
		if !explicit {
			if link.Loopback {
				return p, usagef("VIP %s is on %s: name the interfaces clients come in on with --iface", s.VIP, link.Name)
			}
			addIface(link)
		}
		if s.Mode == config.ModeFullNAT {
			fullNAT = true
		}
		for _, b := range s.Backends {
			a := b.Addr.Addr()
			r, err := d.res.Route(a)
			if err != nil {
				return p, usagef("backend %s: no route: %v", a, err)
			}
			if r.Local && s.Mode == config.ModeDNAT {
				return p, usagef("backend %s is an address of this host: in dnat mode its replies would not come back through l4raw; use --mode fullnat", a)
			}
			if seenBackend[a] {
				continue
			}
			seenBackend[a] = true
			p.backends = append(p.backends, a)
			if r.Local {
				// A backend on the balancer itself: frames go to it through
				// lo, from the backend's own address, so its replies come
				// back through lo too, where l4raw takes them.
				addIface(r.Link)
				p.localSNAT[a] = a
				continue
			}
			if !explicit {
				addIface(r.Link)
			} else if _, ok := ifaces[r.Link.Index]; !ok {
				return p, usagef("backend %s is reached through %s, which is not among --iface", a, r.Link.Name)
			}
			if !firstBackend.IsValid() {
				firstBackend = a
			}
			if r.Src.IsValid() && !slices.Contains(p.local, r.Src) {
				p.local = append(p.local, r.Src)
			}
		}
	}
	for _, i := range order {
		p.ifaces = append(p.ifaces, ifaces[i])
	}

	// SNAT addresses and NAT ports (full NAT only).
	if fullNAT {
		p.snat = spec.SNAT
		if len(p.snat) == 0 && !firstBackend.IsValid() {
			// Every backend is on this host: each uses its own address.
			for _, a := range p.backends {
				p.snat = []netip.Addr{p.localSNAT[a]}
				break
			}
		}
		if len(p.snat) == 0 {
			r, err := d.res.Route(firstBackend)
			if err != nil || !r.Src.IsValid() {
				return p, usagef("no source address toward backend %s: set --snat-ip", firstBackend)
			}
			p.snat = []netip.Addr{r.Src}
			for _, a := range p.backends {
				if r2, err := d.res.Route(a); err == nil && r2.Src.IsValid() && r2.Src != r.Src {
					d.log.Warn("backends are reached from different source addresses; all use the first as SNAT address (set --snat-ip to choose)",
						"snat", r.Src, "backend", a, "its_source", r2.Src)
				}
			}
		}
		for _, a := range p.snat {
			if _, ok, err := d.res.AddrOwner(a); err != nil || !ok {
				return p, usagef("--snat-ip %s is not a local address", a)
			}
			if !slices.Contains(p.local, a) {
				p.local = append(p.local, a)
			}
		}
		eph, reserved, err := firewall.ReadKernelPorts(os.DirFS("/"))
		if err != nil {
			return p, fmt.Errorf("read the kernel's port ranges: %w", err)
		}
		nr := spec.NATPorts
		if nr.IsZero() {
			if nr, err = firewall.DefaultNATRange(eph, reserved); err != nil {
				return p, usageError{err}
			}
		} else if err := firewall.CheckNATRange(nr, eph, reserved); err != nil {
			return p, usagef("--nat-ports %s: %v", nr, err)
		}
		p.natPorts = nr
		for _, s := range spec.Services {
			for _, port := range s.Ports {
				if slices.Contains(p.snat, s.VIP) && port >= nr.Lo && port <= nr.Hi {
					return p, usagef("service %s:%d lies in the NAT port range %s on the same address", s.VIP, port, nr)
				}
			}
		}
	}

	// What the engine forwards, what the guard drops and what the filter takes.
	p.setup = forward.Setup{SNAT: p.snat, NATPorts: p.natPorts, Ifaces: p.ifaces, LocalSNAT: p.localSNAT}
	p.endpoints = map[int][]netip.AddrPort{}
	p.passive = map[int]int{}
	// An endpoint is checked unless every service has it in maint.
	checked := map[netip.AddrPort]bool{}
	for _, s := range spec.Services {
		for _, b := range s.Backends {
			if b.State != config.StateMaint {
				checked[s.CheckAddr(b)] = true
			}
		}
	}
	seenTarget := map[int]bool{}
	for _, s := range spec.Services {
		ss := forward.ServiceSpec{Name: s.Name, VIP: s.VIP, Ports: s.Ports, Scheduler: s.Scheduler, ResetOnMaint: s.MaintFlows == "reset"}
		if s.Mode == config.ModeDNAT {
			ss.Mode = forward.DNAT
		}
		var ports []packet.PortRange
		for _, port := range s.Ports {
			ports = append(ports, packet.PortRange{Lo: port, Hi: port})
		}
		p.guard.Dst = append(p.guard.Dst, firewall.DstMatch{Addr: s.VIP, Ports: ports})
		p.filter.Dst = append(p.filter.Dst, datapath.DstMatch{Addr: s.VIP, Ports: ports})
		for _, b := range s.Backends {
			st, err := forward.ParseMemberState(b.State)
			if err != nil {
				st = forward.Ready // config validated it; "" is ready
			}
			ss.Backends = append(ss.Backends, forward.BackendSpec{Addr: b.Addr, Weight: b.Weight, State: st})
			check := s.CheckAddr(b)
			id := d.targetID(check, s.Health)
			if checked[check] && !seenTarget[id] {
				seenTarget[id] = true
				h := s.Health
				p.targets = append(p.targets, health.Target{ID: id, Addr: check, Prober: timedProber{p: d.prober(h), id: id, d: d},
					Config: health.Config{Interval: h.Interval, Timeout: h.Timeout, Rise: h.Rise, Fall: h.Fall}})
				p.passive[id] = h.Passive
			}
			for _, port := range s.Ports {
				ep := b.Target(port)
				if !slices.Contains(p.endpoints[id], ep) {
					p.endpoints[id] = append(p.endpoints[id], ep)
				}
				if s.Mode == config.ModeDNAT {
					p.guard.Src = append(p.guard.Src, firewall.SrcMatch{Addr: ep.Addr(), Port: ep.Port()})
					p.filter.Src = append(p.filter.Src, datapath.SrcMatch{Addr: ep})
				}
			}
		}
		p.setup.Services = append(p.setup.Services, ss)
	}
	natAddrs := slices.Clone(p.snat)
	for _, a := range p.backends {
		if l, ok := p.localSNAT[a]; ok && !slices.Contains(natAddrs, l) {
			natAddrs = append(natAddrs, l)
		}
	}
	for _, a := range natAddrs {
		p.guard.Dst = append(p.guard.Dst, firewall.DstMatch{Addr: a, Ports: []packet.PortRange{p.natPorts}})
		p.filter.Dst = append(p.filter.Dst, datapath.DstMatch{Addr: a, Ports: []packet.PortRange{p.natPorts}})
	}
	p.filter.Local = p.local
	return p, nil
}

// targetID returns the stable health target ID of a check of addr with
// settings h: the same check keeps its ID, and so its state, across reloads.
func (d *daemon) targetID(addr netip.AddrPort, h config.Health) int {
	key := fmt.Sprintf("%s %+v", addr, h)
	id, ok := d.targetIDs[key]
	if !ok {
		id = len(d.targetIDs)
		d.targetIDs[key] = id
	}
	return id
}

// prober returns the prober for a service's health settings. Values that
// compare equal across reloads keep a target's check loop running.
func (d *daemon) prober(h config.Health) health.Prober {
	switch h.Type {
	case config.HealthHTTP:
		return health.HTTPProber{Path: h.Path, Status: h.Status, Host: h.Host}
	case config.HealthSendExpect:
		return health.SendExpectProber{Send: h.Send, Expect: h.Expect}
	}
	return d.tcp
}

// vipLink finds where a VIP lives: the interface holding it as a local
// address, or, when it is a free address of a connected subnet and
// vip_arp allows it, the interface on which l4raw claims it (claim true).
func (d *daemon) vipLink(spec config.Spec, vip netip.Addr) (neigh.Link, bool, error) {
	owner, local, err := d.res.AddrOwner(vip)
	if err != nil {
		return neigh.Link{}, false, fmt.Errorf("look up VIP %s: %w", vip, err)
	}
	conn, _, connected, err := d.res.ConnectedLink(vip)
	if err != nil {
		return neigh.Link{}, false, fmt.Errorf("look up VIP %s: %w", vip, err)
	}
	dev := "IF"
	if connected {
		dev = conn.Name
	} else if r, err := d.res.Route(vip); err == nil && !r.Link.Loopback {
		dev = r.Link.Name
	} else if links, err := d.res.Links(); err == nil {
		// No route either: name the interface if the host has only one.
		var up []string
		for _, l := range links {
			if l.Up && !l.Loopback {
				up = append(up, l.Name)
			}
		}
		if len(up) == 1 {
			dev = up[0]
		}
	}
	switch {
	case local && spec.VIPARP == config.VIPARPOn:
		return neigh.Link{}, false, usagef("VIP %s is a local address of %s, and --vip-arp on claims free addresses only: remove it (`ip addr del %s/32 dev %s`) or use --vip-arp auto", vip, owner.Name, vip, owner.Name)
	case local:
		return owner, false, nil
	case spec.VIPARP == config.VIPARPOff:
		return neigh.Link{}, false, usagef("VIP %s is not a local address: add it with `ip addr add %s/32 dev %s` (or let l4raw claim it with --vip-arp auto)", vip, vip, dev)
	case !connected:
		return neigh.Link{}, false, usagef("VIP %s is not a local address and in no connected subnet: add it with `ip addr add %s/32 dev %s`", vip, vip, dev)
	}
	return conn, true, nil
}
