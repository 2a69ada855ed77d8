package firewall

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// ChainName is the one base chain of the guard table.
const ChainName = "prerouting"

// DstMatch drops TCP to Addr whose destination port is in one of Ports: a VIP and
// its service ports, or the SNAT address and the NAT port range.
type DstMatch struct {
	Addr  netip.Addr
	Ports []PortRange
}

// SrcMatch drops TCP from Addr:Port whose destination is not a local address (fib
// daddr type != local): replies of DNAT-mode backends, which the kernel would
// otherwise forward un-NATed to the client, while health-check replies to the
// host's own address still pass.
type SrcMatch struct {
	Addr netip.Addr
	Port uint16
}

// Spec is the whole guard: Apply installs exactly these matches, one rule each
// (one per port range for a DstMatch), the Dst rules first, each in slice order.
type Spec struct {
	Dst []DstMatch
	Src []SrcMatch
}

// Validate reports the first match Apply would refuse.
func (s Spec) Validate() error {
	_, err := s.rules()
	return err
}

// Script is the nft(8) input that makes the same change as Apply(s) on table
// (nft -f commits it as one transaction), for operators and dry runs.
func (s Spec) Script(table string) (string, error) {
	rules, err := s.rules()
	if err != nil {
		return "", err
	}
	return nftScript(table, rules), nil
}

// rule is one guard rule: its nft expressions and the same rule as nft text.
type rule struct {
	text  string // e.g. "ip daddr 198.18.0.100 tcp dport 80", without "counter drop"
	exprs []expr.Any
}

// family holds what differs between IPv4 and IPv6 rules: the nfproto value, the
// nft keyword and where the addresses sit in the network header (RFC 791 for IPv4:
// saddr at 12, daddr at 16). IPv6 adds a case here (RFC 8200: 8 and 24, 16 bytes).
type family struct {
	nfproto      byte
	keyword      string
	saddr, daddr uint32
	addrLen      uint32
}

func familyOf(a netip.Addr) (family, error) {
	switch {
	case !a.IsValid():
		return family{}, errors.New("no address")
	case a.Is4():
		return family{nfproto: unix.NFPROTO_IPV4, keyword: "ip", saddr: 12, daddr: 16, addrLen: 4}, nil
	}
	return family{}, errors.New("only ipv4 is supported")
}

// TCP header offsets (RFC 9293 section 3.1): source port at 0, destination at 2.
const (
	tcpSportOffset = 0
	tcpDportOffset = 2
)

// rules validates spec and turns it into rules, in Spec order.
func (s Spec) rules() ([]rule, error) {
	var out []rule
	for _, d := range s.Dst {
		f, err := familyOf(d.Addr)
		if err != nil {
			return nil, fmt.Errorf("firewall: dst %s: %w", d.Addr, err)
		}
		if len(d.Ports) == 0 {
			return nil, fmt.Errorf("firewall: dst %s: no ports", d.Addr)
		}
		for _, p := range d.Ports {
			if err := p.Valid(); err != nil {
				return nil, fmt.Errorf("firewall: dst %s: %w", d.Addr, err)
			}
			out = append(out, dstRule(f, d.Addr, p))
		}
	}
	for _, m := range s.Src {
		f, err := familyOf(m.Addr)
		if err != nil {
			return nil, fmt.Errorf("firewall: src %s: %w", m.Addr, err)
		}
		if m.Port == 0 {
			return nil, fmt.Errorf("firewall: src %s: port 0 is not a tcp port", netip.AddrPortFrom(m.Addr, 0))
		}
		out = append(out, srcRule(f, m.Addr, m.Port))
	}
	return out, nil
}

// The expressions below are what nft 1.0 generates for the rule text (compare
// `nft --debug=netlink list table inet l4raw`): in an inet table "ip daddr" implies
// "meta nfproto ipv4" and "tcp dport" implies "meta l4proto tcp", and a port range
// is a pair of cmp gte/lte. Matching nft byte for byte keeps `nft list` output
// identical to the equivalent nft commands.

func dstRule(f family, a netip.Addr, p PortRange) rule {
	e := addrMatch(f, f.daddr, a)
	e = append(e, portMatch(tcpDportOffset, p)...)
	return rule{
		text:  fmt.Sprintf("%s daddr %s tcp dport %s", f.keyword, a, p),
		exprs: append(e, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}),
	}
}

func srcRule(f family, a netip.Addr, port uint16) rule {
	e := addrMatch(f, f.saddr, a)
	e = append(e, portMatch(tcpSportOffset, PortRange{Lo: port, Hi: port})...)
	e = append(e,
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		// The fib result is an RTN_* route type in host byte order (nft_fib_store_result).
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	)
	return rule{
		text:  fmt.Sprintf("%s saddr %s tcp sport %d fib daddr type != local", f.keyword, a, port),
		exprs: append(e, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}),
	}
}

func addrMatch(f family, offset uint32, a netip.Addr) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{f.nfproto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: f.addrLen},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()},
	}
}

func portMatch(offset uint32, p PortRange) []expr.Any {
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: offset, Len: 2},
	}
	if p.Lo == p.Hi {
		return append(e, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(p.Lo)})
	}
	return append(e,
		&expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: binaryutil.BigEndian.PutUint16(p.Lo)},
		&expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: binaryutil.BigEndian.PutUint16(p.Hi)},
	)
}

// chainFor is the guard's base chain. Raw priority (-300) runs before conntrack
// (-200), so dropped segments leave no conntrack entries; AF_PACKET taps frames
// before IP input, so l4raw still receives them.
func chainFor(t *nftables.Table) *nftables.Chain {
	accept := nftables.ChainPolicyAccept
	return &nftables.Chain{
		Name:     ChainName,
		Table:    t,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookPrerouting,
		Priority: nftables.ChainPriorityRaw,
		Policy:   &accept,
	}
}

// nftScript is the nft(8) input that makes the same change as Apply(spec) in one
// transaction (nft -f commits a file as one batch). It documents the golden files
// and is checked against the kernel by the namespace tests.
func nftScript(table string, rules []rule) string {
	var b strings.Builder
	fmt.Fprintf(&b, "add table inet %s\n", table)
	fmt.Fprintf(&b, "delete table inet %s\n", table)
	fmt.Fprintf(&b, "add table inet %s\n", table)
	fmt.Fprintf(&b, "add chain inet %s %s { type filter hook prerouting priority raw; policy accept; }\n", table, ChainName)
	for _, r := range rules {
		fmt.Fprintf(&b, "add rule inet %s %s %s counter drop\n", table, ChainName, r.text)
	}
	return b.String()
}
