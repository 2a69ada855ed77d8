package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/l4raw/l4raw/pkg/api"
	"github.com/l4raw/l4raw/pkg/config"
	"github.com/l4raw/l4raw/pkg/conntrack"
	"github.com/l4raw/l4raw/pkg/datapath"
	"github.com/l4raw/l4raw/pkg/firewall"
	"github.com/l4raw/l4raw/pkg/forward"
	"github.com/l4raw/l4raw/pkg/health"
	"github.com/l4raw/l4raw/pkg/neigh"
)

// daemon wires the packages together for one run.
type daemon struct {
	log       *slog.Logger
	out       io.Writer
	cfgFile   string // "" when started from flags
	pcap      pcapFlags
	pprofAddr string
	started   time.Time

	res     *neigh.Resolver
	eng     *forward.Engine
	tracker *neigh.Tracker
	checker *health.Checker
	guard   *firewall.Guard
	tcp     *health.TCPProber // shared, so a target's prober compares equal across reloads

	// mu serialises changes (reload, API) and guards what they change.
	mu        sync.Mutex
	spec      config.Spec
	plan      plan
	lanes     map[int][]*lane // by interface index
	claims    map[netip.Addr]*vipClaim
	targetIDs map[string]int // health target key -> stable ID
	lanesWG   sync.WaitGroup
	laneErrs  chan error

	hmu    sync.Mutex
	health map[int]*healthState // by target ID
	// endpoints maps health target IDs to the backend endpoints they cover.
	// Health events read it without d.mu: a reload holds d.mu while it
	// waits for the checker, whose events must not wait for d.mu.
	endpoints atomic.Pointer[map[int][]netip.AddrPort]
}

type lane struct {
	rx *datapath.RxSocket
	tx *datapath.TxSocket
	l  *datapath.Lane
}

type healthState struct {
	known, up bool
	reason    string
	latency   time.Duration
}

func newDaemon(spec config.Spec, log *slog.Logger, out io.Writer, cfgFile string) *daemon {
	return &daemon{spec: spec, log: log, out: out, cfgFile: cfgFile, started: time.Now(),
		tcp: &health.TCPProber{}, lanes: map[int][]*lane{}, claims: map[netip.Addr]*vipClaim{}, targetIDs: map[string]int{}, health: map[int]*healthState{},
		laneErrs: make(chan error, 64)}
}

// permErr turns EPERM into a message naming the missing capability.
func permErr(what, capability string, err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%s: %w (l4raw needs %s; run it as root or grant CAP_NET_RAW and CAP_NET_ADMIN)", what, err, capability)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (d *daemon) run() error {
	lock, err := firewall.Lock("default")
	if err != nil {
		return err
	}
	defer lock.Close()

	d.res, err = neigh.New(d.log)
	if err != nil {
		return permErr("netlink", "CAP_NET_ADMIN", err)
	}
	defer d.res.Close()
	if d.plan, err = d.makePlan(d.spec); err != nil {
		return err
	}
	d.endpoints.Store(&d.plan.endpoints)
	restoreSysctls, err := d.ensureLoSysctls(d.plan.localSNAT)
	if err != nil {
		return err
	}
	defer restoreSysctls()
	// VIPs l4raw claims must be free before anything else happens.
	probed, err := d.probeClaims(context.Background(), d.plan.claims)
	if err != nil {
		return err
	}
	defer func() {
		d.mu.Lock()
		d.dropClaims(nil)
		d.mu.Unlock()
	}()
	if d.pprofAddr != "" {
		ln, err := net.Listen("tcp", d.pprofAddr)
		if err != nil {
			return usagef("--pprof %s: %v", d.pprofAddr, err)
		}
		defer ln.Close()
		go d.servePprof(ln)
	}
	var apiLn net.Listener
	if d.spec.API != "off" {
		if apiLn, err = net.Listen("tcp", d.spec.API); err != nil {
			return usagef("--api %s: %v", d.spec.API, err)
		}
		defer apiLn.Close()
	}

	ctx, cancel := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	defer bg.Wait()
	defer cancel()

	d.tracker = d.res.NewTracker(d.onHop)
	d.eng = forward.New(forward.Config{
		MaxConns: d.spec.MaxConns,
		Timeouts: conntrack.Timeouts(d.spec.Timeouts),
		Workers:  d.workers(),
		Log:      d.log,
		Kick:     d.tracker.Kick,
	})
	if err := d.eng.Apply(d.plan.setup); err != nil {
		return err
	}
	stopCapture, err := d.startCapture()
	if err != nil {
		return err
	}
	defer stopCapture()

	// Next hops first, so the first SYNs find a MAC to go to.
	if err := d.resolveAll(ctx, d.plan.backends); err != nil {
		return err
	}
	d.tracker.SetTargets(d.plan.backends)
	bg.Add(1)
	go func() { defer bg.Done(); _ = d.tracker.Run(ctx) }()

	// One round of health checks decides who takes the first connections.
	d.checker = health.New(d.log, d.tcp, d.onHealth)
	d.checker.SetTargets(d.plan.targets)
	d.checker.Initial(ctx)
	bg.Add(1)
	go func() { defer bg.Done(); d.checker.Run(ctx) }()
	bg.Add(1)
	go func() { defer bg.Done(); d.passiveHealth(ctx) }()

	if d.spec.Guard {
		if err := d.installGuard(); err != nil {
			return err
		}
		defer d.removeGuard()
	} else {
		d.log.Warn("guard disabled (--no-guard): keep the kernel out yourself, see scripts/setup.sh", "vip", d.plan.guard.Dst)
	}

	d.mu.Lock()
	err = d.syncLanes(d.plan)
	if err == nil {
		d.serveClaims(probed) // now that frames to the VIPs are taken
	} else {
		for _, c := range probed {
			c.Close()
		}
	}
	d.mu.Unlock()
	if err != nil {
		d.closeAllLanes()
		return err
	}
	stopExpiry := make(chan struct{})
	bg.Add(1)
	go func() { defer bg.Done(); d.eng.RunExpiry(stopExpiry, 100*time.Millisecond) }()

	if apiLn != nil {
		srv := api.NewServer(controller{d}, d.log)
		bg.Add(1)
		go func() {
			defer bg.Done()
			if err := srv.Serve(ctx, apiLn); err != nil {
				d.log.Error("api", "err", err)
			}
		}()
	}
	d.log.Info("forwarding", "services", d.serviceList(), "interfaces", d.ifaceNames(), "snat", d.plan.snat,
		"nat_ports", d.plan.natPorts.String(), "workers", d.workers(), "max_conns", d.spec.MaxConns, "api", d.spec.API)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1, syscall.SIGHUP)
	defer signal.Stop(sigs)
	var runErr error
loop:
	for {
		select {
		case s := <-sigs:
			switch s {
			case syscall.SIGUSR1:
				d.printCounters()
			case syscall.SIGHUP:
				_ = d.reload()
			default:
				d.log.Info("stopping", "signal", s.String())
				break loop
			}
		case err := <-d.laneErrs:
			runErr = err
			break loop
		}
	}
	d.closeAllLanes()
	close(stopExpiry)
	cancel()
	d.printCounters()
	return runErr
}

func (d *daemon) workers() int {
	if d.spec.Workers > 0 {
		return d.spec.Workers
	}
	return runtime.NumCPU()
}

// reload re-reads the config file and applies the difference; a refusal is
// logged (whoever asked, a signal or the API) and returned.
func (d *daemon) reload() error {
	err := d.reloadFile()
	if err != nil {
		d.log.Error("reload refused; the running configuration stays", "err", err)
	}
	return err
}

func (d *daemon) reloadFile() error {
	if d.cfgFile == "" {
		return invalid(errors.New("started without --config: nothing to reload"))
	}
	data, err := os.ReadFile(d.cfgFile)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	spec, err := config.Parse(d.cfgFile, data)
	if err != nil {
		return invalid(fmt.Errorf("reload: %w", err))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.applyLocked(spec); err != nil {
		return err
	}
	d.log.Info("reloaded", "file", d.cfgFile, "services", d.serviceList())
	return nil
}

// applyLocked makes spec the running configuration: connections keep their
// backends, new services and ports start, removed ones stop, the guard and
// the filters are replaced atomically. Settings that only a restart can
// change are refused. The caller holds d.mu.
func (d *daemon) applyLocked(spec config.Spec) error {
	cur := d.spec
	switch {
	case spec.MaxConns != cur.MaxConns:
		return invalid(errors.New("max_conns cannot change at run time (restart l4raw)"))
	case spec.Workers != cur.Workers:
		return invalid(errors.New("workers cannot change at run time (restart l4raw)"))
	case spec.API != cur.API:
		return invalid(errors.New("api cannot change at run time (restart l4raw)"))
	case spec.Guard != cur.Guard:
		return invalid(errors.New("guard cannot change at run time (restart l4raw)"))
	}
	p, err := d.makePlan(spec)
	if err != nil {
		return invalid(err)
	}
	if p.natPorts != d.plan.natPorts || !slices.Equal(p.snat, d.plan.snat) {
		return invalid(fmt.Errorf("SNAT addresses and NAT ports cannot change at run time (now %v %s, asked %v %s; restart l4raw)",
			d.plan.snat, d.plan.natPorts, p.snat, p.natPorts))
	}
	if _, err := d.ensureLoSysctls(p.localSNAT); err != nil {
		return invalid(err)
	}
	probed, err := d.probeClaims(context.Background(), p.claims)
	if err != nil {
		return invalid(err)
	}
	if err := d.eng.Apply(p.setup); err != nil {
		for _, c := range probed {
			c.Close()
		}
		return invalid(err)
	}
	d.eng.Table().SetTimeouts(conntrack.Timeouts(spec.Timeouts))
	if d.guard != nil {
		// Before the filters: a new VIP is dropped by the kernel before
		// l4raw takes it, never the other way round.
		if err := d.guard.Apply(p.guard); err != nil {
			d.log.Error("update guard table", "err", err)
		}
	}
	if err := d.syncLanes(p); err != nil {
		d.log.Error("update sockets", "err", err)
	}
	d.serveClaims(probed)
	d.dropClaims(p.claims)
	ctx, cancel := context.WithTimeout(context.Background(), neigh.DefaultResolveTimeout)
	_ = d.resolveAll(ctx, newAddrs(d.plan.backends, p.backends)) // logged; a refusal was caught at start
	cancel()
	d.tracker.SetTargets(p.backends)
	d.endpoints.Store(&p.endpoints)
	// A new endpoint under a check whose state is known (a new port of a
	// service, say) gets that state now: the check reports only changes.
	var all []netip.AddrPort
	for _, eps := range p.endpoints {
		all = append(all, eps...)
	}
	d.pushHealth(p.endpoints, all)
	d.checker.SetTargets(p.targets)
	d.spec, d.plan = spec, p
	return nil
}

// invalidError is a change refused because of what was asked: its text is
// the reason alone, and it matches api.ErrInvalid (HTTP 400).
type invalidError struct{ err error }

func (e invalidError) Error() string   { return e.err.Error() }
func (e invalidError) Unwrap() []error { return []error{e.err, api.ErrInvalid} }

func invalid(err error) error { return invalidError{err} }

func newAddrs(old, cur []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range cur {
		if !slices.Contains(old, a) {
			out = append(out, a)
		}
	}
	return out
}

func (d *daemon) installGuard() error {
	g, err := firewall.New(d.log)
	if err != nil {
		return err
	}
	if stale, err := g.Exists(); err != nil {
		return permErr("nftables", "CAP_NET_ADMIN", err)
	} else if stale {
		d.log.Warn("removing a guard table left by an earlier l4raw", "table", "inet "+firewall.TableName)
	}
	if err := g.Apply(d.plan.guard); err != nil {
		return permErr("install guard table inet "+firewall.TableName, "CAP_NET_ADMIN", err)
	}
	d.guard = g
	return nil
}

func (d *daemon) removeGuard() {
	if d.guard == nil {
		return
	}
	if err := d.guard.Remove(); err != nil {
		d.log.Error("remove guard table", "err", err)
	}
	d.guard.Close()
}

// fanoutID names the PACKET_FANOUT group of one interface: unique per
// process and interface, never zero.
func fanoutID(ifindex int) uint16 {
	id := uint16(os.Getpid()*31 + ifindex)
	if id == 0 {
		id = 1
	}
	return id
}

// syncLanes makes the lanes match p: the filter of every socket is replaced,
// interfaces new to p get lanes, interfaces p no longer uses lose theirs.
// Lane i of every interface shares worker i: a worker's counters are atomic,
// and the interface set may change at run time. The caller holds d.mu.
func (d *daemon) syncLanes(p plan) error {
	prog, err := datapath.BuildFilter(p.filter)
	if err != nil {
		return usageError{err}
	}
	want := map[int]bool{}
	for _, ifc := range p.ifaces {
		want[ifc.Index] = true
	}
	for idx, ls := range d.lanes {
		if !want[idx] {
			d.stopLanes(ls)
			delete(d.lanes, idx)
			continue
		}
		for _, l := range ls {
			if err := l.rx.SetFilter(prog); err != nil {
				return err
			}
		}
	}
	w := d.workers()
	for _, ifc := range p.ifaces {
		if _, ok := d.lanes[ifc.Index]; ok {
			continue
		}
		ls, err := d.openLanes(ifc, prog, w)
		if err != nil {
			return err
		}
		d.lanes[ifc.Index] = ls
		for _, l := range ls {
			d.lanesWG.Add(1)
			go func(l *lane, name string) {
				defer d.lanesWG.Done()
				err := l.l.Run()
				l.tx.Close()
				if err != nil {
					d.laneErrs <- fmt.Errorf("interface %s: %w", name, err)
				}
			}(l, ifc.Name)
		}
	}
	return nil
}

func (d *daemon) openLanes(ifc forward.Iface, prog []bpf.Instruction, w int) ([]*lane, error) {
	var ls []*lane
	for i := 0; i < w; i++ {
		opt := datapath.Options{}
		if w > 1 {
			opt.FanoutID = fanoutID(ifc.Index)
		}
		rx, err := datapath.ListenRx(ifc.Index, prog, opt)
		if err != nil {
			d.stopLanes(ls)
			return nil, permErr("packet socket on "+ifc.Name, "CAP_NET_RAW", err)
		}
		tx, err := datapath.ListenTx()
		if err != nil {
			rx.Close()
			d.stopLanes(ls)
			return nil, permErr("packet socket", "CAP_NET_RAW", err)
		}
		ls = append(ls, &lane{rx: rx, tx: tx, l: datapath.NewLane(rx, tx, d.eng.Worker(i), datapath.DefaultBatch)})
	}
	return ls, nil
}

// stopLanes closes the lanes' receive sockets; each lane then returns and
// closes its send socket.
func (d *daemon) stopLanes(ls []*lane) {
	for _, l := range ls {
		l.rx.Close()
	}
}

func (d *daemon) closeAllLanes() {
	d.mu.Lock()
	for idx, ls := range d.lanes {
		d.stopLanes(ls)
		delete(d.lanes, idx)
	}
	d.mu.Unlock()
	d.lanesWG.Wait()
}

// allLanes returns every lane, for counters.
func (d *daemon) allLanes() []*lane {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []*lane
	for _, ls := range d.lanes {
		out = append(out, ls...)
	}
	return out
}

// resolveAll resolves the next hops of addrs once, all at the same time,
// bounded by the resolver's timeout. An unreachable backend is logged and
// waited for; a refusal of the kernel (no CAP_NET_ADMIN to ask for
// neighbour resolution) is an error.
func (d *daemon) resolveAll(ctx context.Context, addrs []netip.Addr) error {
	var wg sync.WaitGroup
	errs := make([]error, len(addrs))
	for i, a := range addrs {
		wg.Add(1)
		go func(i int, a netip.Addr) {
			defer wg.Done()
			rctx, cancel := context.WithTimeout(ctx, neigh.DefaultResolveTimeout)
			defer cancel()
			nh, err := d.res.Resolve(rctx, a)
			errs[i] = err
			d.onHop(a, nh, err)
		}(i, a)
	}
	wg.Wait()
	for i, err := range errs {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return permErr(fmt.Sprintf("resolve the next hop toward backend %s", addrs[i]), "CAP_NET_ADMIN", err)
		}
	}
	return nil
}

func (d *daemon) onHop(dst netip.Addr, nh neigh.NextHop, err error) {
	if err != nil {
		d.log.Warn("no next hop toward backend; its connections wait", "backend", dst, "err", err)
		d.eng.SetHop(dst, nil)
		return
	}
	d.log.Debug("next hop", "backend", dst, "via", nh.Route.Hop(), "dev", nh.Link.Name, "mac", macString(nh.DstMAC))
	d.eng.SetHop(dst, &forward.Hop{Ifindex: nh.Link.Index, Src: nh.Link.MAC, Dst: nh.DstMAC})
}

func (d *daemon) onHealth(ev health.Event) {
	d.hmu.Lock()
	hs := d.health[ev.ID]
	if hs == nil {
		hs = &healthState{}
		d.health[ev.ID] = hs
	}
	hs.known, hs.up, hs.reason = true, ev.Up, ev.Reason
	d.hmu.Unlock()
	if m := d.endpoints.Load(); m != nil {
		d.pushHealth(*m, (*m)[ev.ID])
	}
}

// pushHealth sets the engine's health of endpoints eps: an endpoint is up
// when every check that covers it (two services may check one backend
// differently) is up.
func (d *daemon) pushHealth(byTarget map[int][]netip.AddrPort, eps []netip.AddrPort) {
	d.hmu.Lock()
	defer d.hmu.Unlock()
	for _, ep := range eps {
		up, known := true, false
		for id, cover := range byTarget {
			if !slices.Contains(cover, ep) {
				continue
			}
			if hs := d.health[id]; hs != nil && hs.known {
				known = true
				up = up && hs.up
			} else {
				up = false
			}
		}
		d.eng.SetHealth(ep, known && up)
	}
}

// healthOf returns the health of target id.
func (d *daemon) healthOf(id int) healthState {
	d.hmu.Lock()
	defer d.hmu.Unlock()
	if hs := d.health[id]; hs != nil {
		return *hs
	}
	return healthState{}
}

// timedProber records how long each check of a target takes.
type timedProber struct {
	p  health.Prober
	id int
	d  *daemon
}

func (t timedProber) Probe(ctx context.Context, addr netip.AddrPort) error {
	start := time.Now()
	err := t.p.Probe(ctx, addr)
	t.d.hmu.Lock()
	hs := t.d.health[t.id]
	if hs == nil {
		hs = &healthState{}
		t.d.health[t.id] = hs
	}
	hs.latency = time.Since(start)
	t.d.hmu.Unlock()
	return err
}

// passiveHealth turns failed new connections into failed checks: every
// second, a target whose backends refused or left unanswered at least the
// service's `passive` new connections, and answered none, gets one failed
// check report, so `fall` such seconds take it down like failed active
// checks. Recovery is left to the active checks.
func (d *daemon) passiveHealth(ctx context.Context) {
	type seen struct{ answered, refused, retried uint64 }
	last := map[netip.AddrPort]seen{}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		byAddr := map[netip.AddrPort]*forward.Backend{}
		for _, b := range d.eng.Backends() {
			byAddr[b.Addr] = b
		}
		d.mu.Lock()
		targets, endpoints, passive := d.plan.targets, d.plan.endpoints, d.plan.passive
		d.mu.Unlock()
		for _, t := range targets {
			var a, r, rt uint64
			for _, ep := range endpoints[t.ID] {
				b := byAddr[ep]
				if b == nil {
					continue
				}
				na, nr, nrt := b.SynOutcomes()
				prev := last[ep]
				last[ep] = seen{na, nr, nrt}
				a, r, rt = a+na-prev.answered, r+nr-prev.refused, rt+nrt-prev.retried
			}
			if n := passive[t.ID]; n > 0 && a == 0 && r+rt >= uint64(n) {
				d.checker.Report(t.ID, false, fmt.Sprintf("passive: %d new connections refused, %d unanswered, none answered in 1s", r, rt))
			}
		}
	}
}

func macString(m [6]byte) string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}

func (d *daemon) serviceList() []string {
	var out []string
	for _, s := range d.spec.Services {
		for _, p := range s.Ports {
			out = append(out, netip.AddrPortFrom(s.VIP, p).String())
		}
	}
	return out
}

func (d *daemon) ifaceNames() []string {
	var out []string
	for _, i := range d.plan.ifaces {
		out = append(out, i.Name)
	}
	return out
}
