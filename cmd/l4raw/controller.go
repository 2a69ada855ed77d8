package main

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/l4raw/l4raw/pkg/api"
	"github.com/l4raw/l4raw/pkg/config"
	"github.com/l4raw/l4raw/pkg/conntrack"
	"github.com/l4raw/l4raw/pkg/forward"
)

// controller is the daemon as the runtime API sees it. Changes made through
// it edit the running configuration; a reload replaces them with the file's
// (as HAProxy's runtime API does).
type controller struct{ d *daemon }

var _ api.Controller = controller{}

func (c controller) Status() api.Status {
	d := c.d
	st := api.Status{Version: version, Commit: commit, StartedAt: d.started, Counters: map[string]uint64{},
		Conns: d.eng.Table().Len(), ConnLimit: d.eng.Table().Cap()}
	for _, x := range d.counters() {
		st.Counters[x.name] = x.value
	}
	d.mu.Lock()
	st.Services = len(d.spec.Services)
	d.mu.Unlock()
	return st
}

func (c controller) Services() []api.ServiceInfo {
	d := c.d
	d.mu.Lock()
	spec := d.spec
	targetOf := map[netip.AddrPort]int{}
	for _, t := range d.plan.targets {
		targetOf[t.Addr] = t.ID
	}
	d.mu.Unlock()
	byAddr := map[netip.AddrPort]*forward.Backend{}
	for _, b := range d.eng.Backends() {
		byAddr[b.Addr] = b
	}
	var out []api.ServiceInfo
	for _, s := range spec.Services {
		si := api.ServiceInfo{Name: s.Name, VIP: s.VIP.String(), Ports: s.Ports, Mode: s.Mode.String(), Scheduler: s.Scheduler}
		for _, b := range s.Backends {
			bi := api.BackendInfo{Service: s.Name, Address: api.FormatBackend(b.Addr), Weight: b.Weight, State: stateOf(b), Health: api.HealthUnknown}
			if id, ok := targetOf[s.CheckAddr(b)]; ok && bi.State != api.StateMaint {
				if hs := d.healthOf(id); hs.known {
					bi.Health, bi.HealthReason = api.HealthDown, hs.reason
					if hs.up {
						bi.Health = api.HealthUp
					}
					bi.CheckLatency = hs.latency.Seconds()
				}
			}
			for _, port := range s.Ports {
				if eb := byAddr[b.Target(port)]; eb != nil {
					st := eb.Stats()
					bi.Active += eb.Active()
					bi.Established += eb.Established()
					bi.Conns += st.Conns
					bi.PktsIn += st.PktsIn
					bi.BytesIn += st.BytesIn
					bi.PktsOut += st.PktsOut
					bi.BytesOut += st.BytesOut
					bi.NATPorts += eb.NATPortsInUse()
				}
			}
			si.Backends = append(si.Backends, bi)
		}
		out = append(out, si)
	}
	return out
}

func stateOf(b config.Backend) string {
	if b.State == "" {
		return api.StateReady
	}
	return b.State
}

// change edits a copy of the running spec with fn and applies it.
func (c controller) change(service string, addr netip.AddrPort, fn func(svc *config.Service, i int) error) error {
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	spec := d.spec
	spec.Services = slices.Clone(spec.Services)
	si := slices.IndexFunc(spec.Services, func(s config.Service) bool { return s.Name == service })
	if si < 0 {
		return fmt.Errorf("service %q: %w", service, api.ErrNotFound)
	}
	svc := &spec.Services[si]
	svc.Backends = slices.Clone(svc.Backends)
	bi := slices.IndexFunc(svc.Backends, func(b config.Backend) bool { return b.Addr == addr })
	if err := fn(svc, bi); err != nil {
		return err
	}
	if err := spec.Validate(); err != nil {
		return invalid(err)
	}
	if err := d.applyLocked(spec); err != nil {
		d.log.Error("change refused; the running configuration stays", "service", service, "backend", addr, "err", err)
		return err
	}
	return nil
}

func (c controller) AddBackend(service string, addr netip.AddrPort, weight int) error {
	return c.change(service, addr, func(svc *config.Service, i int) error {
		if i >= 0 {
			return fmt.Errorf("service %q: backend %s: %w", service, api.FormatBackend(addr), api.ErrExists)
		}
		svc.Backends = append(svc.Backends, config.Backend{Addr: addr, Weight: weight, State: config.StateReady})
		c.d.log.Info("backend added", "service", service, "backend", addr, "weight", weight)
		return nil
	})
}

func (c controller) RemoveBackend(service string, addr netip.AddrPort) error {
	return c.change(service, addr, func(svc *config.Service, i int) error {
		if i < 0 {
			return fmt.Errorf("service %q: backend %s: %w", service, api.FormatBackend(addr), api.ErrNotFound)
		}
		if len(svc.Backends) == 1 {
			return fmt.Errorf("service %q: backend %s is its last backend: drain or maint it instead: %w", service, api.FormatBackend(addr), api.ErrInvalid)
		}
		svc.Backends = slices.Delete(svc.Backends, i, i+1)
		c.d.log.Info("backend removed; its connections continue", "service", service, "backend", addr)
		return nil
	})
}

func (c controller) SetWeight(service string, addr netip.AddrPort, weight int) error {
	return c.change(service, addr, func(svc *config.Service, i int) error {
		if i < 0 {
			return fmt.Errorf("service %q: backend %s: %w", service, api.FormatBackend(addr), api.ErrNotFound)
		}
		svc.Backends[i].Weight = weight
		c.d.log.Info("backend weight", "service", service, "backend", addr, "weight", weight)
		return nil
	})
}

func (c controller) SetState(service string, addr netip.AddrPort, state string) error {
	if !api.ValidState(state) {
		return fmt.Errorf("state %q: want ready, drain or maint: %w", state, api.ErrInvalid)
	}
	return c.change(service, addr, func(svc *config.Service, i int) error {
		if i < 0 {
			return fmt.Errorf("service %q: backend %s: %w", service, api.FormatBackend(addr), api.ErrNotFound)
		}
		svc.Backends[i].State = state
		c.d.log.Info("backend state", "service", service, "backend", addr, "state", state)
		return nil
	})
}

func (c controller) Reload() error { return c.d.reload() }

func (c controller) Flows(f api.FlowFilter, offset, limit int) (api.FlowPage, error) {
	d := c.d
	var want netip.AddrPort
	if f.Backend != "" {
		var err error
		if want, err = netip.ParseAddrPort(f.Backend); err != nil {
			return api.FlowPage{}, fmt.Errorf("backend %q: want IP:PORT: %w", f.Backend, api.ErrInvalid)
		}
	}
	if f.Service != "" {
		d.mu.Lock()
		ok := slices.ContainsFunc(d.spec.Services, func(s config.Service) bool { return s.Name == f.Service })
		d.mu.Unlock()
		if !ok {
			return api.FlowPage{}, fmt.Errorf("service %q: %w", f.Service, api.ErrNotFound)
		}
	}
	bs := d.eng.Backends()
	now := d.eng.Now()
	page := api.FlowPage{Offset: offset, Next: -1, Flows: []api.FlowInfo{}}
	d.eng.Table().Walk(func(fl *conntrack.Flow) bool {
		var svcName string
		if s := d.eng.ServiceByID(fl.Service); s != nil {
			svcName = s.Name
		}
		if f.Service != "" && svcName != f.Service {
			return true
		}
		var be netip.AddrPort
		if int(fl.Backend) < len(bs) {
			be = bs[fl.Backend].Addr
		}
		if want.IsValid() && be != want {
			return true
		}
		n := page.Total
		page.Total++
		if n < offset || len(page.Flows) >= limit {
			return true
		}
		fi := api.FlowInfo{Service: svcName, State: fl.State.String(),
			Client:      addrPort(fl.Orig.Src, fl.Orig.SrcPort).String(),
			VIP:         addrPort(fl.Orig.Dst, fl.Orig.DstPort).String(),
			Backend:     be.String(),
			IdleSeconds: float64(int32(now-fl.Seen)) / 1000,
		}
		if fl.Reply.Dst != fl.Orig.Src {
			fi.SNAT = addrPort(fl.Reply.Dst, fl.Reply.DstPort).String()
		}
		page.Flows = append(page.Flows, fi)
		return true
	})
	if offset+len(page.Flows) < page.Total {
		page.Next = offset + len(page.Flows)
	}
	return page, nil
}

func addrPort(a conntrack.Addr, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(a).Unmap(), port)
}
