package firewall

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// nftJSON is the part of `nft -j list table` the tests look at.
type nftJSON struct {
	Nftables []struct {
		Table *struct{ Family, Name string }
		Chain *struct {
			Family, Table, Name, Type, Hook, Policy string
			Prio                                    int
		}
		Rule *struct {
			Chain string
			Expr  []map[string]json.RawMessage
		}
	}
}

type listedTable struct {
	chains []string // "name type hook prio policy"
	rules  []string // each rule's expressions as JSON
}

func listTable(t *testing.T, ns *netNS, table string) (listedTable, bool) {
	t.Helper()
	out, err := output("ip", "netns", "exec", ns.name, "nft", "-j", "list", "table", "inet", table)
	if err != nil {
		if strings.Contains(string(out), "No such file or directory") {
			return listedTable{}, false
		}
		t.Fatalf("nft list table inet %s: %v: %s", table, err, out)
	}
	var doc nftJSON
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("nft -j output: %v\n%s", err, out)
	}
	var lt listedTable
	for _, o := range doc.Nftables {
		if c := o.Chain; c != nil {
			lt.chains = append(lt.chains, strings.Join([]string{c.Name, c.Type, c.Hook, itoa(c.Prio), c.Policy}, " "))
		}
		if r := o.Rule; r != nil {
			b, _ := json.Marshal(r.Expr)
			lt.rules = append(lt.rules, r.Chain+" "+string(b))
		}
	}
	return lt, true
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestGuardNetNS(t *testing.T) {
	needRoot(t, "nft")
	needNftNetlink(t)
	ns := newNetNS(t)
	// A table of someone else's must survive everything the guard does.
	ns.exec(t, "nft", "add table ip other; add chain ip other c { type filter hook input priority 0; }; add rule ip other c tcp dport 22 accept")
	other := ns.exec(t, "nft", "list", "table", "ip", "other")

	g, err := New(discard(), WithNetNS(ns.fd))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()

	if ok, err := g.Exists(); err != nil || ok {
		t.Fatalf("Exists in a fresh namespace = %v, %v", ok, err)
	}
	if err := g.Remove(); err != nil {
		t.Fatalf("Remove of a missing table: %v", err)
	}
	if _, ok := listTable(t, ns, TableName); ok {
		t.Fatal("Remove of a missing table left a table behind")
	}

	full := goldenSpecs[2].spec
	if err := g.Apply(full); err != nil {
		t.Fatal(err)
	}
	lt, ok := listTable(t, ns, TableName)
	if !ok {
		t.Fatal("no table after Apply")
	}
	if want := []string{"prerouting filter prerouting -300 accept"}; !slices.Equal(lt.chains, want) {
		t.Errorf("chains %q, want %q", lt.chains, want)
	}
	if len(lt.rules) != 5 {
		t.Fatalf("%d rules, want 5:\n%s", len(lt.rules), strings.Join(lt.rules, "\n"))
	}
	for i, want := range []string{
		`"198.18.0.100"`, `"198.18.0.100"`, `"198.18.0.1"`, `"198.18.1.10"`, `"198.18.1.11"`,
	} {
		r := lt.rules[i]
		if !strings.Contains(r, want) || !strings.Contains(r, `"counter"`) || !strings.Contains(r, `{"drop":null}`) {
			t.Errorf("rule %d = %s; want address %s, a counter and drop", i, r, want)
		}
	}
	if !strings.Contains(lt.rules[2], `{"range":[61000,65535]}`) {
		t.Errorf("nat rule %s lacks the port range", lt.rules[2])
	}
	if !strings.Contains(lt.rules[3], `"fib":{"result":"type","flags":["daddr"]}`) || !strings.Contains(lt.rules[3], `"op":"!="`) {
		t.Errorf("src rule %s lacks fib daddr type != local", lt.rules[3])
	}
	if ok, err := g.Exists(); err != nil || !ok {
		t.Fatalf("Exists after Apply = %v, %v", ok, err)
	}
	counters, err := g.Counters()
	if err != nil || len(counters) != 5 || counters[0].Rule != "ip daddr 198.18.0.100 tcp dport 80" {
		t.Fatalf("Counters = %+v, %v", counters, err)
	}

	// A different spec replaces the whole table: the old rules are gone.
	small := Spec{Dst: []DstMatch{{Addr: netip.MustParseAddr("198.18.0.200"), Ports: []PortRange{{Lo: 8443, Hi: 8443}}}}}
	if err := g.Apply(small); err != nil {
		t.Fatal(err)
	}
	lt, _ = listTable(t, ns, TableName)
	if len(lt.chains) != 1 || len(lt.rules) != 1 || !strings.Contains(lt.rules[0], `"198.18.0.200"`) || !strings.Contains(lt.rules[0], "8443") {
		t.Fatalf("after the second Apply: chains %q rules %q", lt.chains, lt.rules)
	}
	if counters, err := g.Counters(); err != nil || len(counters) != 1 {
		t.Fatalf("Counters after replace = %+v, %v", counters, err)
	}
	// Applying the same spec again is a full replace too, not an append.
	if err := g.Apply(small); err != nil {
		t.Fatal(err)
	}
	if lt, _ = listTable(t, ns, TableName); len(lt.rules) != 1 {
		t.Fatalf("Apply twice: %d rules, want 1", len(lt.rules))
	}

	// A new Guard, as after a restart, finds the stale table and removes it.
	g2, err := New(discard(), WithNetNS(ns.fd))
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	if ok, err := g2.Exists(); err != nil || !ok {
		t.Fatalf("Exists of a stale table = %v, %v", ok, err)
	}
	if _, err := g2.Counters(); err == nil {
		t.Error("Counters of a table this Guard did not apply succeeded")
	}
	if err := g2.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, ok := listTable(t, ns, TableName); ok {
		t.Fatal("table still there after Remove")
	}
	if ok, err := g.Exists(); err != nil || ok {
		t.Fatalf("Exists after Remove = %v, %v", ok, err)
	}
	if err := g.Remove(); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	if got := ns.exec(t, "nft", "list", "table", "ip", "other"); got != other {
		t.Errorf("foreign table changed:\n%s\nwant:\n%s", got, other)
	}

	// Two table names share a namespace without touching each other.
	g3, err := New(discard(), WithNetNS(ns.fd), WithTableName("l4raw-b"))
	if err != nil {
		t.Fatal(err)
	}
	defer g3.Close()
	if err := g3.Apply(small); err != nil {
		t.Fatal(err)
	}
	if err := g.Apply(full); err != nil {
		t.Fatal(err)
	}
	if err := g3.Remove(); err != nil {
		t.Fatal(err)
	}
	if lt, ok := listTable(t, ns, TableName); !ok || len(lt.rules) != 5 {
		t.Fatalf("removing l4raw-b touched l4raw: %v %q", ok, lt.rules)
	}
}

// TestNftScriptsEquivalent loads each testdata/firewall/*.nft with nft(8) into one
// namespace and applies the same spec with the Guard in another: the kernel must
// hold the same bytecode in both, so the golden files name the right commands.
func TestNftScriptsEquivalent(t *testing.T) {
	needRoot(t, "nft")
	needNftNetlink(t)
	handle := regexp.MustCompile(`(?m)^(inet \S+ \S+)( \d+)+$`)
	listing := func(ns *netNS) string {
		out := ns.exec(t, "nft", "--debug=netlink", "list", "table", "inet", TableName)
		return handle.ReplaceAllString(out, "$1")
	}
	for _, tt := range goldenSpecs {
		t.Run(tt.name, func(t *testing.T) {
			byNft, byGuard := newNetNS(t), newNetNS(t)
			script, err := filepath.Abs(filepath.Join(goldenDir, tt.name+".nft"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(script); err != nil {
				t.Fatal(err)
			}
			byNft.exec(t, "nft", "-f", script)
			g, err := New(discard(), WithNetNS(byGuard.fd))
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			if err := g.Apply(tt.spec); err != nil {
				t.Fatal(err)
			}
			want, got := listing(byNft), listing(byGuard)
			if got != want {
				t.Errorf("Apply and nft -f %s.nft differ:\n%s", tt.name, lineDiff(got, want))
			}
			if tt.name == "full" && !strings.Contains(got, "[ fib daddr type => reg 1 ]") {
				t.Errorf("listing lacks the fib expression:\n%s", got)
			}
		})
	}
}
