// Package firewall keeps the host kernel away from the TCP segments that l4raw
// forwards.
//
// With the VIP as a local address the kernel would answer a client's SYN with RST
// before l4raw's forward arrives, and it would RST backend replies to the SNAT
// address on NAT ports. A drop in the raw-priority prerouting hook fixes both:
// AF_PACKET taps frames before IP input, so l4raw still receives everything, while
// the kernel sees nothing (no RSTs, no conntrack entries). A global RST drop in
// OUTPUT, the older alternative, makes the kernel build a RST per forwarded segment
// and also swallows the backends' legitimate RSTs.
//
// The guard is one nftables table (family inet, so IPv6 fits later) owned by l4raw
// and replaced as a whole in one netlink batch, so there is never a moment without
// it and never a leftover rule of an older configuration.
package firewall

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
)

// TableName is the default nftables table of the guard (family inet).
const TableName = "l4raw"

// maxTableName is NFT_NAME_MAXLEN (256, include/uapi/linux/netfilter/nf_tables.h)
// minus the terminating NUL.
const maxTableName = 255

// Option changes how New builds a Guard.
type Option func(*options)

type options struct {
	netns    int
	table    string
	testDial nltest.Func // set only by tests: record netlink messages instead of sending them
}

// WithNetNS makes the Guard work in the network namespace that fd refers to
// (an open /run/netns/NAME) instead of the caller's; 0 keeps the caller's. The fd
// must stay open as long as the Guard is used: each operation opens its netlink
// socket there.
func WithNetNS(fd int) Option { return func(o *options) { o.netns = fd } }

// WithTableName replaces TableName, so that two guards can share a namespace.
func WithTableName(name string) Option { return func(o *options) { o.table = name } }

// Guard installs, replaces and removes the guard table.
type Guard struct {
	log   *slog.Logger
	table *nftables.Table
	conn  *nftables.Conn

	mu     sync.Mutex
	closed bool
	rules  []rule // as last applied, for Counters
}

var errClosed = errors.New("guard is closed")

// New prepares a Guard; it does not touch the kernel. A nil log discards. The netlink socket is opened
// per operation rather than kept: a batch the kernel rejected may leave replies
// queued, and a fresh socket per batch keeps them from being read as the answer
// to the next one.
func New(log *slog.Logger, opts ...Option) (*Guard, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o := options{table: TableName}
	for _, opt := range opts {
		opt(&o)
	}
	if o.table == "" || len(o.table) > maxTableName || strings.ContainsRune(o.table, 0) {
		return nil, fmt.Errorf("firewall: table name %q: want 1 to %d bytes, no NUL", o.table, maxTableName)
	}
	if o.netns < 0 {
		return nil, fmt.Errorf("firewall: netns fd %d: not a file descriptor", o.netns)
	}
	var copts []nftables.ConnOption
	if o.netns > 0 {
		copts = append(copts, nftables.WithNetNSFd(o.netns))
	}
	if o.testDial != nil {
		copts = append(copts, nftables.WithTestDial(o.testDial))
	}
	conn, err := nftables.New(copts...)
	if err != nil {
		return nil, fmt.Errorf("firewall: open nftables: %w", err)
	}
	return &Guard{
		log:   log.With("table", "inet "+o.table),
		table: &nftables.Table{Name: o.table, Family: nftables.TableFamilyINet},
		conn:  conn,
	}, nil
}

// Apply installs the guard for spec, replacing any table of the same name, in one
// netlink batch: add table (creates it if missing, so the delete cannot fail),
// delete table (with every chain, rule and counter in it), add table, add the
// chain, add the rules. The kernel commits the batch atomically, so segments see
// either the old guard or the new one, never none.
func (g *Guard) Apply(spec Spec) error {
	rules, err := spec.rules()
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return fmt.Errorf("firewall: apply table inet %s: %w", g.table.Name, errClosed)
	}
	g.conn.AddTable(g.table)
	g.conn.DelTable(g.table)
	g.conn.AddTable(g.table)
	ch := g.conn.AddChain(chainFor(g.table))
	for _, r := range rules {
		g.conn.AddRule(&nftables.Rule{Table: g.table, Chain: ch, Exprs: r.exprs})
	}
	if err := g.conn.Flush(); err != nil {
		return flat(fmt.Errorf("firewall: apply table inet %s: %w", g.table.Name, err))
	}
	g.rules = rules
	g.log.Info("guard installed", "rules", len(rules))
	for _, r := range rules {
		g.log.Debug("guard rule", "rule", r.text+" counter drop")
	}
	return nil
}

// Remove deletes the guard table. A missing table is not an error: the batch adds
// the table before deleting it, which also makes Remove race-free against another
// process removing it at the same moment.
func (g *Guard) Remove() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return fmt.Errorf("firewall: remove table inet %s: %w", g.table.Name, errClosed)
	}
	g.conn.AddTable(g.table)
	g.conn.DelTable(g.table)
	if err := g.conn.Flush(); err != nil {
		return flat(fmt.Errorf("firewall: remove table inet %s: %w", g.table.Name, err))
	}
	g.rules = nil
	g.log.Info("guard removed")
	return nil
}

// Exists reports whether the guard table is present, for example one left behind
// by a killed l4raw (the caller removes it before forwarding starts).
func (g *Guard) Exists() (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false, fmt.Errorf("firewall: look up table inet %s: %w", g.table.Name, errClosed)
	}
	_, err := g.conn.ListTableOfFamily(g.table.Name, g.table.Family)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ENOENT):
		return false, nil
	}
	return false, flat(fmt.Errorf("firewall: look up table inet %s: %w", g.table.Name, err))
}

// RuleCounter is the counter of one guard rule.
type RuleCounter struct {
	Rule    string // the rule as nft prints it, without "counter drop"
	Packets uint64
	Bytes   uint64
}

// Counters reads the rules' counters, in Spec order, so that dropped segments can
// be exported as metrics. It fails if the table no longer holds the rules this
// Guard applied last.
func (g *Guard) Counters() ([]RuleCounter, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, fmt.Errorf("firewall: read counters of table inet %s: %w", g.table.Name, errClosed)
	}
	got, err := g.conn.GetRules(g.table, chainFor(g.table))
	if err != nil {
		return nil, flat(fmt.Errorf("firewall: read counters of table inet %s: %w", g.table.Name, err))
	}
	if len(got) != len(g.rules) {
		return nil, fmt.Errorf("firewall: read counters of table inet %s: %d rules, want %d: changed by someone else",
			g.table.Name, len(got), len(g.rules))
	}
	out := make([]RuleCounter, len(got))
	for i, r := range got {
		out[i].Rule = g.rules[i].text
		for _, e := range r.Exprs {
			if c, ok := e.(*expr.Counter); ok {
				out[i].Packets, out[i].Bytes = c.Packets, c.Bytes
			}
		}
	}
	return out, nil
}

// Close releases the Guard. It leaves the table in place: removing the guard
// while l4raw still forwards would let the kernel RST its flows, so the caller
// calls Remove when forwarding has stopped.
func (g *Guard) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	return nil
}

// flatError keeps an error on one line: nftables joins the errors of a rejected
// batch with newlines.
type flatError struct{ err error }

func (e flatError) Error() string { return strings.ReplaceAll(e.err.Error(), "\n", "; ") }
func (e flatError) Unwrap() error { return e.err }

func flat(err error) error {
	if !strings.Contains(err.Error(), "\n") {
		return err
	}
	return flatError{err}
}
