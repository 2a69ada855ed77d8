// Package apitest provides an in-memory api.Controller for tests of the API
// server, its clients and anything that drives them.
package apitest

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"

	"github.com/l4raw/l4raw/pkg/api"
)

// Fake is an api.Controller over plain data. It checks its arguments the
// way the daemon does (unknown service or backend, duplicate backend, weight
// and state ranges) and records every call that changes something.
type Fake struct {
	mu       sync.Mutex
	status   api.Status
	services []api.ServiceInfo
	flows    []api.FlowInfo
	calls    []string
	fail     map[string]error
	reloads  int
}

var _ api.Controller = (*Fake)(nil)

// New returns a Fake showing st, svcs and flows. Status.Services follows
// the services the Fake holds.
func New(st api.Status, svcs []api.ServiceInfo, flows []api.FlowInfo) *Fake {
	return &Fake{status: st, services: cloneServices(svcs), flows: slices.Clone(flows), fail: map[string]error{}}
}

// FailNext makes the next call of method op ("AddBackend", "Reload", ...)
// return err instead of acting.
func (f *Fake) FailNext(op string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[op] = err
}

// Calls returns the changing calls so far, as "Op service addr value".
func (f *Fake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// Reloads returns how many times Reload succeeded.
func (f *Fake) Reloads() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reloads
}

// Status implements api.Controller.
func (f *Fake) Status() api.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.status
	st.Services = len(f.services)
	st.Counters = maps.Clone(f.status.Counters)
	return st
}

// Services implements api.Controller.
func (f *Fake) Services() []api.ServiceInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return cloneServices(f.services)
}

// AddBackend implements api.Controller.
func (f *Fake) AddBackend(service string, addr netip.AddrPort, weight int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeFail("AddBackend"); err != nil {
		return err
	}
	s, err := f.service(service)
	if err != nil {
		return err
	}
	if _, err := f.backend(s, addr); err == nil {
		return fmt.Errorf("service %q: backend %s: %w", service, api.FormatBackend(addr), api.ErrExists)
	}
	if !addr.IsValid() || !addr.Addr().Is4() || addr.Addr().IsUnspecified() {
		return fmt.Errorf("service %q: backend %s: not a unicast IPv4 address: %w", service, api.FormatBackend(addr), api.ErrInvalid)
	}
	if weight < api.MinWeight || weight > api.MaxWeight {
		return fmt.Errorf("service %q: backend %s: weight %d: %w", service, api.FormatBackend(addr), weight, api.ErrInvalid)
	}
	s.Backends = append(s.Backends, api.BackendInfo{
		Service: service, Address: api.FormatBackend(addr), Weight: weight,
		State: api.StateReady, Health: api.HealthUnknown,
	})
	f.calls = append(f.calls, fmt.Sprintf("AddBackend %s %s %d", service, api.FormatBackend(addr), weight))
	return nil
}

// RemoveBackend implements api.Controller.
func (f *Fake) RemoveBackend(service string, addr netip.AddrPort) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeFail("RemoveBackend"); err != nil {
		return err
	}
	s, err := f.service(service)
	if err != nil {
		return err
	}
	i, err := f.backend(s, addr)
	if err != nil {
		return err
	}
	s.Backends = slices.Delete(s.Backends, i, i+1)
	f.calls = append(f.calls, fmt.Sprintf("RemoveBackend %s %s", service, api.FormatBackend(addr)))
	return nil
}

// SetWeight implements api.Controller.
func (f *Fake) SetWeight(service string, addr netip.AddrPort, weight int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeFail("SetWeight"); err != nil {
		return err
	}
	s, err := f.service(service)
	if err != nil {
		return err
	}
	i, err := f.backend(s, addr)
	if err != nil {
		return err
	}
	if weight < api.MinWeight || weight > api.MaxWeight {
		return fmt.Errorf("service %q: backend %s: weight %d: %w", service, api.FormatBackend(addr), weight, api.ErrInvalid)
	}
	s.Backends[i].Weight = weight
	f.calls = append(f.calls, fmt.Sprintf("SetWeight %s %s %d", service, api.FormatBackend(addr), weight))
	return nil
}

// SetState implements api.Controller.
func (f *Fake) SetState(service string, addr netip.AddrPort, state string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeFail("SetState"); err != nil {
		return err
	}
	s, err := f.service(service)
	if err != nil {
		return err
	}
	i, err := f.backend(s, addr)
	if err != nil {
		return err
	}
	if !api.ValidState(state) {
		return fmt.Errorf("service %q: backend %s: state %q: %w", service, api.FormatBackend(addr), state, api.ErrInvalid)
	}
	s.Backends[i].State = state
	f.calls = append(f.calls, fmt.Sprintf("SetState %s %s %s", service, api.FormatBackend(addr), state))
	return nil
}

// Flows implements api.Controller.
func (f *Fake) Flows(filter api.FlowFilter, offset, limit int) (api.FlowPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeFail("Flows"); err != nil {
		return api.FlowPage{}, err
	}
	if filter.Service != "" {
		if _, err := f.service(filter.Service); err != nil {
			return api.FlowPage{}, err
		}
	}
	if offset < 0 || limit < 1 {
		return api.FlowPage{}, fmt.Errorf("flows: offset %d, limit %d: %w", offset, limit, api.ErrInvalid)
	}
	var match []api.FlowInfo
	for _, fl := range f.flows {
		if (filter.Service == "" || fl.Service == filter.Service) && (filter.Backend == "" || fl.Backend == filter.Backend) {
			match = append(match, fl)
		}
	}
	p := api.FlowPage{Total: len(match), Offset: offset, Next: -1}
	if offset < len(match) {
		end := min(offset+limit, len(match))
		p.Flows = slices.Clone(match[offset:end])
		if end < len(match) {
			p.Next = end
		}
	}
	return p, nil
}

// Reload implements api.Controller.
func (f *Fake) Reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeFail("Reload"); err != nil {
		return err
	}
	f.reloads++
	f.calls = append(f.calls, "Reload")
	return nil
}

func (f *Fake) takeFail(op string) error {
	err := f.fail[op]
	delete(f.fail, op)
	return err
}

func (f *Fake) service(name string) (*api.ServiceInfo, error) {
	for i := range f.services {
		if f.services[i].Name == name {
			return &f.services[i], nil
		}
	}
	return nil, fmt.Errorf("service %q: %w", name, api.ErrNotFound)
}

func (f *Fake) backend(s *api.ServiceInfo, addr netip.AddrPort) (int, error) {
	for i, b := range s.Backends {
		if ap, err := api.ParseBackend(b.Address); err == nil && ap == addr {
			return i, nil
		}
	}
	return -1, fmt.Errorf("service %q: backend %s: %w", s.Name, api.FormatBackend(addr), api.ErrNotFound)
}

func cloneServices(in []api.ServiceInfo) []api.ServiceInfo {
	out := slices.Clone(in)
	for i := range out {
		out[i].Ports = slices.Clone(out[i].Ports)
		out[i].Backends = slices.Clone(out[i].Backends)
	}
	return out
}
