package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/l4raw/l4raw/pkg/config"
	"github.com/l4raw/l4raw/pkg/conntrack"
	"github.com/l4raw/l4raw/pkg/datapath"
	"github.com/l4raw/l4raw/pkg/firewall"
	"github.com/l4raw/l4raw/pkg/forward"
	"github.com/l4raw/l4raw/pkg/health"
	"github.com/l4raw/l4raw/pkg/nat"
	"github.com/l4raw/l4raw/pkg/neigh"
)

// daemon wires the packages together for one run.
type daemon struct {
	spec config.Spec
	log  *slog.Logger
	out  io.Writer

	res     *neigh.Resolver
	eng     *forward.Engine
	tracker *neigh.Tracker
	checker *health.Checker
	guard   *firewall.Guard

	plan  plan
	lanes []*lane
}

type lane struct {
	rx *datapath.RxSocket
	tx *datapath.TxSocket
	l  *datapath.Lane
}

// plan is the environment-dependent part of the set-up, worked out before
// anything is changed.
type plan struct {
	ifaces    []forward.Iface
	snat      []netip.Addr
	natPorts  nat.PortRange
	local     []netip.Addr // the host's own addresses toward the backends
	setup     forward.Setup
	guard     firewall.Spec
	filter    datapath.FilterSpec
	endpoints map[int][]netip.AddrPort // health target ID -> backend endpoints it covers
	targets   []health.Target
	backends  []netip.Addr // distinct backend addresses, for next hops
}

func newDaemon(spec config.Spec, log *slog.Logger, out io.Writer) *daemon {
	return &daemon{spec: spec, log: log, out: out}
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
	if d.plan, err = d.makePlan(); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var bg sync.WaitGroup
	defer bg.Wait()
	defer cancel()

	lanes := len(d.plan.ifaces) * d.workers()
	d.tracker = d.res.NewTracker(d.onHop)
	d.eng = forward.New(forward.Config{
		MaxConns: d.spec.MaxConns,
		Timeouts: conntrack.Timeouts(d.spec.Timeouts),
		Workers:  lanes,
		Log:      d.log,
		Kick:     d.tracker.Kick,
	})
	if err := d.eng.Apply(d.plan.setup); err != nil {
		return err
	}

	// Next hops first, so the first SYNs find a MAC to go to.
	d.resolveAll(ctx)
	d.tracker.SetTargets(d.plan.backends)
	bg.Add(1)
	go func() { defer bg.Done(); _ = d.tracker.Run(ctx) }()

	// One round of health checks decides who takes the first connections.
	d.checker = health.New(d.log, &health.TCPProber{}, d.onHealth)
	d.checker.SetTargets(d.plan.targets)
	d.checker.Initial(ctx)
	bg.Add(1)
	go func() { defer bg.Done(); d.checker.Run(ctx) }()

	if d.spec.Guard {
		if err := d.installGuard(); err != nil {
			return err
		}
		defer d.removeGuard()
	} else {
		d.log.Warn("guard disabled (--no-guard): keep the kernel out yourself, see scripts/setup.sh", "vip", d.plan.guard.Dst)
	}

	if err := d.openLanes(); err != nil {
		d.closeLanes()
		return err
	}
	stopExpiry := make(chan struct{})
	bg.Add(1)
	go func() { defer bg.Done(); d.eng.RunExpiry(stopExpiry, 100*time.Millisecond) }()

	errc := make(chan error, len(d.lanes))
	var lanesDone sync.WaitGroup
	for _, l := range d.lanes {
		lanesDone.Add(1)
		go func(l *lane) {
			defer lanesDone.Done()
			if err := l.l.Run(); err != nil {
				errc <- fmt.Errorf("interface %d: %w", l.rx.Ifindex(), err)
			}
		}(l)
	}
	d.log.Info("forwarding", "services", d.serviceList(), "interfaces", d.ifaceNames(), "snat", d.plan.snat,
		"nat_ports", d.plan.natPorts.String(), "workers", d.workers(), "max_conns", d.spec.MaxConns)

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
				d.log.Warn("SIGHUP: configuration reload is not supported yet; restart l4raw to apply changes")
			default:
				d.log.Info("stopping", "signal", s.String())
				break loop
			}
		case err := <-errc:
			runErr = err
			break loop
		}
	}
	d.closeLanes()
	lanesDone.Wait()
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

func (d *daemon) openLanes() error {
	prog, err := datapath.BuildFilter(d.plan.filter)
	if err != nil {
		return usageError{err}
	}
	w := d.workers()
	for _, ifc := range d.plan.ifaces {
		for i := 0; i < w; i++ {
			opt := datapath.Options{}
			if w > 1 {
				opt.FanoutID = fanoutID(ifc.Index)
			}
			rx, err := datapath.ListenRx(ifc.Index, prog, opt)
			if err != nil {
				return permErr("packet socket on "+ifc.Name, "CAP_NET_RAW", err)
			}
			tx, err := datapath.ListenTx()
			if err != nil {
				rx.Close()
				return permErr("packet socket", "CAP_NET_RAW", err)
			}
			worker := d.eng.Worker(len(d.lanes))
			d.lanes = append(d.lanes, &lane{rx: rx, tx: tx, l: datapath.NewLane(rx, tx, worker, datapath.DefaultBatch)})
		}
	}
	return nil
}

func (d *daemon) closeLanes() {
	for _, l := range d.lanes {
		l.rx.Close()
	}
	// The send sockets close once every lane has returned; closing one
	// under a running lane would only turn its last batch into an error.
	go func(ls []*lane) {
		time.Sleep(100 * time.Millisecond)
		for _, l := range ls {
			l.tx.Close()
		}
	}(d.lanes)
}

// resolveAll resolves every backend's next hop once, all at the same time,
// bounded by the resolver's timeout.
func (d *daemon) resolveAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, a := range d.plan.backends {
		wg.Add(1)
		go func(a netip.Addr) {
			defer wg.Done()
			rctx, cancel := context.WithTimeout(ctx, neigh.DefaultResolveTimeout)
			defer cancel()
			nh, err := d.res.Resolve(rctx, a)
			d.onHop(a, nh, err)
		}(a)
	}
	wg.Wait()
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
	for _, ep := range d.plan.endpoints[ev.ID] {
		d.eng.SetHealth(ep, ev.Up)
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
