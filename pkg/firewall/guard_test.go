package firewall

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite testdata/firewall/*.golden and *.nft from the current code")

// goldenDir holds the expected batches; it sits at the repository root.
const goldenDir = "../../testdata/firewall"

// withTestDial makes the Guard hand its netlink messages to f instead of the kernel.
func withTestDial(f nltest.Func) Option { return func(o *options) { o.testDial = f } }

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// recorder stands in for the kernel: it keeps every request and acknowledges it,
// or answers with reply when that is set.
type recorder struct {
	mu    sync.Mutex
	sends [][]netlink.Message // one entry per send(2) of the netlink socket
	reply func(req []netlink.Message) ([]netlink.Message, error)
}

func (r *recorder) dial(req []netlink.Message) ([]netlink.Message, error) {
	if req == nil { // a Receive with nothing queued: no more replies
		return nil, nil
	}
	r.mu.Lock()
	r.sends = append(r.sends, req)
	reply := r.reply
	r.mu.Unlock()
	if reply != nil {
		return reply(req)
	}
	return acks(req), nil
}

func acks(req []netlink.Message) []netlink.Message {
	var out []netlink.Message
	for _, m := range req {
		if m.Header.Flags&netlink.Acknowledge != 0 {
			out = append(out, netlink.Message{
				Header: netlink.Header{Type: netlink.Error, Sequence: m.Header.Sequence, PID: m.Header.PID},
				Data:   make([]byte, 4), // errno 0
			})
		}
	}
	return out
}

func (r *recorder) guard(t *testing.T, opts ...Option) *Guard {
	t.Helper()
	g, err := New(discard(), append(opts, withTestDial(r.dial))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	return g
}

// goldenSpecs are the batches kept in testdata/firewall/<name>.golden, each with
// the nft commands that make the same change in <name>.nft.
var goldenSpecs = []struct {
	name string
	spec Spec
}{
	{"empty", Spec{}},
	{"vip", Spec{Dst: []DstMatch{{Addr: netip.MustParseAddr("198.18.0.100"), Ports: []PortRange{{Lo: 80, Hi: 80}, {Lo: 443, Hi: 443}}}}}},
	{"full", Spec{
		Dst: []DstMatch{
			{Addr: netip.MustParseAddr("198.18.0.100"), Ports: []PortRange{{Lo: 80, Hi: 80}, {Lo: 8000, Hi: 8099}}},
			{Addr: netip.MustParseAddr("198.18.0.1"), Ports: []PortRange{{Lo: 61000, Hi: 65535}}},
		},
		Src: []SrcMatch{
			{Addr: netip.MustParseAddr("198.18.1.10"), Port: 8080},
			{Addr: netip.MustParseAddr("198.18.1.11"), Port: 8080},
		},
	}},
}

func TestApplyGolden(t *testing.T) {
	for _, tt := range goldenSpecs {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			if err := rec.guard(t).Apply(tt.spec); err != nil {
				t.Fatal(err)
			}
			if err := tt.spec.Validate(); err != nil {
				t.Fatal(err)
			}
			script, err := tt.spec.Script(TableName)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, tt.name, rec, script)
		})
	}
}

func TestRemoveGolden(t *testing.T) {
	rec := &recorder{}
	if err := rec.guard(t).Remove(); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "remove", rec, fmt.Sprintf("add table inet %s\ndelete table inet %s\n", TableName, TableName))
}

// checkGolden asserts that rec saw exactly one batch, framed by BATCH_BEGIN and
// BATCH_END and sent in one go (the kernel commits it as one transaction), and
// that it equals the golden file.
func checkGolden(t *testing.T, name string, rec *recorder, script string) {
	t.Helper()
	if len(rec.sends) != 1 {
		t.Fatalf("%d sends, want 1 batch", len(rec.sends))
	}
	msgs := rec.sends[0]
	if len(msgs) < 3 || msgs[0].Header.Type != unix.NFNL_MSG_BATCH_BEGIN || msgs[len(msgs)-1].Header.Type != unix.NFNL_MSG_BATCH_END {
		t.Fatalf("not one framed batch: %d messages", len(msgs))
	}
	header := fmt.Sprintf("# One netlink batch; the same change as `nft -f %s.nft`:\n", name)
	for _, l := range strings.Split(strings.TrimSuffix(script, "\n"), "\n") {
		header += "#   " + l + "\n"
	}
	got := header + "# Per message: type, flags, then the payload after the 16-byte nlmsghdr\n" +
		"# (sequence numbers and port IDs are random per socket and left out).\n" + dumpBatch(msgs)

	golden := filepath.Join(goldenDir, name+".golden")
	nft := filepath.Join(goldenDir, name+".nft")
	if *update {
		if err := os.MkdirAll(goldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(nft, []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("batch differs from %s (go test -update rewrites it):\n%s", golden, lineDiff(got, string(want)))
	}
	wantScript, err := os.ReadFile(nft)
	if err != nil {
		t.Fatal(err)
	}
	if script != string(wantScript) {
		t.Errorf("nft script differs from %s:\n%s", nft, lineDiff(script, string(wantScript)))
	}
}

var msgNames = map[netlink.HeaderType]string{
	unix.NFNL_MSG_BATCH_BEGIN:                            "BATCH_BEGIN",
	unix.NFNL_MSG_BATCH_END:                              "BATCH_END",
	unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWTABLE: "NFT_MSG_NEWTABLE",
	unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_DELTABLE: "NFT_MSG_DELTABLE",
	unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWCHAIN: "NFT_MSG_NEWCHAIN",
	unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWRULE:  "NFT_MSG_NEWRULE",
}

// Flag names for new-object requests (include/uapi/linux/netlink.h).
var flagNames = []struct {
	bit  netlink.HeaderFlags
	name string
}{
	{unix.NLM_F_REQUEST, "request"}, {unix.NLM_F_ACK, "ack"}, {unix.NLM_F_ECHO, "echo"},
	{unix.NLM_F_REPLACE, "replace"}, {unix.NLM_F_EXCL, "excl"}, {unix.NLM_F_CREATE, "create"}, {unix.NLM_F_APPEND, "append"},
}

func dumpBatch(msgs []netlink.Message) string {
	var b strings.Builder
	for i, m := range msgs {
		name, ok := msgNames[m.Header.Type]
		if !ok {
			name = fmt.Sprintf("type 0x%04x", uint16(m.Header.Type))
		}
		var flags []string
		left := m.Header.Flags
		for _, f := range flagNames {
			if left&f.bit != 0 {
				flags = append(flags, f.name)
				left &^= f.bit
			}
		}
		if left != 0 {
			flags = append(flags, fmt.Sprintf("0x%x", uint16(left)))
		}
		fmt.Fprintf(&b, "\n%d %s %s\n", i, name, strings.Join(flags, "|"))
		for off := 0; off < len(m.Data); off += 16 {
			row := m.Data[off:min(off+16, len(m.Data))]
			var words []string
			for w := 0; w < len(row); w += 4 {
				words = append(words, fmt.Sprintf("%x", row[w:min(w+4, len(row))]))
			}
			fmt.Fprintf(&b, "  %04x  %s\n", off, strings.Join(words, " "))
		}
	}
	return b.String()
}

// lineDiff marks the lines where got and want differ.
func lineDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	var b bytes.Buffer
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			fmt.Fprintf(&b, "line %d:\n  got:  %s\n  want: %s\n", i+1, gl, wl)
		}
	}
	return b.String()
}

func TestApplyInvalidSpec(t *testing.T) {
	vip := netip.MustParseAddr("198.18.0.100")
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{"no address", Spec{Dst: []DstMatch{{Ports: []PortRange{{Lo: 80, Hi: 80}}}}}, "firewall: dst invalid IP: no address"},
		{"ipv6 dst", Spec{Dst: []DstMatch{{Addr: netip.MustParseAddr("2001:db8::1"), Ports: []PortRange{{Lo: 80, Hi: 80}}}}},
			"firewall: dst 2001:db8::1: only ipv4 is supported"},
		{"mapped ipv4", Spec{Dst: []DstMatch{{Addr: netip.MustParseAddr("::ffff:198.18.0.100"), Ports: []PortRange{{Lo: 80, Hi: 80}}}}},
			"only ipv4 is supported"},
		{"no ports", Spec{Dst: []DstMatch{{Addr: vip}}}, "firewall: dst 198.18.0.100: no ports"},
		{"port 0", Spec{Dst: []DstMatch{{Addr: vip, Ports: []PortRange{{Lo: 0, Hi: 80}}}}}, "firewall: dst 198.18.0.100: port range 0-80: port 0 is not a tcp port"},
		{"inverted", Spec{Dst: []DstMatch{{Addr: vip, Ports: []PortRange{{Lo: 81, Hi: 80}}}}}, "port range 81-80: low end above high end"},
		{"src ipv6", Spec{Src: []SrcMatch{{Addr: netip.MustParseAddr("2001:db8::2"), Port: 80}}}, "firewall: src 2001:db8::2: only ipv4"},
		{"src port 0", Spec{Src: []SrcMatch{{Addr: vip}}}, "firewall: src 198.18.0.100:0: port 0 is not a tcp port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.spec.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want error containing %q", err, tt.want)
			}
			if _, err := tt.spec.Script(TableName); err == nil {
				t.Fatal("Script of an invalid spec succeeded")
			}
			rec := &recorder{}
			err := rec.guard(t).Apply(tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Apply = %v, want error containing %q", err, tt.want)
			}
			if len(rec.sends) != 0 {
				t.Errorf("an invalid spec reached the kernel: %d sends", len(rec.sends))
			}
		})
	}
}

func TestApplyKernelError(t *testing.T) {
	rec := &recorder{reply: func(req []netlink.Message) ([]netlink.Message, error) {
		return nltest.Error(int(unix.EPERM), req)
	}}
	g := rec.guard(t)
	err := g.Apply(goldenSpecs[1].spec)
	if !errors.Is(err, os.ErrPermission) {
		t.Fatalf("Apply = %v, want a permission error", err)
	}
	const want = "firewall: apply table inet l4raw: netlink receive: operation not permitted"
	if err.Error() != want {
		t.Errorf("Apply error %q, want %q", err, want)
	}
	if err := g.Remove(); !errors.Is(err, os.ErrPermission) || !strings.HasPrefix(err.Error(), "firewall: remove table inet l4raw: ") {
		t.Errorf("Remove = %v", err)
	}
}

func TestFlat(t *testing.T) {
	err := flat(fmt.Errorf("firewall: apply: %w", errors.Join(unix.EEXIST, unix.ENOENT)))
	if strings.Contains(err.Error(), "\n") || !errors.Is(err, unix.ENOENT) || !errors.Is(err, unix.EEXIST) {
		t.Fatalf("flat: %q", err)
	}
	if err.Error() != "firewall: apply: file exists; no such file or directory" {
		t.Errorf("flat: %q", err)
	}
}

func TestExists(t *testing.T) {
	tableMsg := func(req []netlink.Message) ([]netlink.Message, error) {
		data := []byte{unix.NFPROTO_INET, 0, 0, 0}
		data = append(data, nltest.MustMarshalAttributes([]netlink.Attribute{
			{Type: unix.NFTA_TABLE_NAME, Data: []byte(TableName + "\x00")},
			{Type: unix.NFTA_TABLE_FLAGS, Data: []byte{0, 0, 0, 0}},
			{Type: unix.NFTA_TABLE_USE, Data: []byte{0, 0, 0, 1}},
		})...)
		return []netlink.Message{{
			Header: netlink.Header{
				Type:     unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWTABLE,
				Sequence: req[0].Header.Sequence, PID: req[0].Header.PID,
			},
			Data: data,
		}}, nil
	}
	tests := []struct {
		name    string
		reply   func([]netlink.Message) ([]netlink.Message, error)
		want    bool
		wantErr string
	}{
		{"present", tableMsg, true, ""},
		{"absent", func(req []netlink.Message) ([]netlink.Message, error) { return nltest.Error(int(unix.ENOENT), req) }, false, ""},
		{"denied", func(req []netlink.Message) ([]netlink.Message, error) { return nltest.Error(int(unix.EPERM), req) }, false,
			"firewall: look up table inet l4raw: netlink receive: operation not permitted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{reply: tt.reply}
			got, err := rec.guard(t).Exists()
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Exists = %v, %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Exists = %v, %v; want %v", got, err, tt.want)
			}
			// The lookup names the table and the inet family.
			req := rec.sends[0][0]
			if req.Header.Type != unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETTABLE || req.Data[0] != unix.NFPROTO_INET ||
				!bytes.Contains(req.Data, []byte(TableName+"\x00")) {
				t.Errorf("lookup request %+v", req)
			}
		})
	}
}

func TestNewOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    []Option
		wantErr string
		table   string
	}{
		{name: "default", table: "l4raw"},
		{name: "caller's namespace", opts: []Option{WithNetNS(0)}, table: "l4raw"},
		{name: "table name", opts: []Option{WithTableName("l4raw-test")}, table: "l4raw-test"},
		{name: "empty table name", opts: []Option{WithTableName("")}, wantErr: `firewall: table name "": want 1 to 255 bytes, no NUL`},
		{name: "long table name", opts: []Option{WithTableName(strings.Repeat("x", 256))}, wantErr: "want 1 to 255 bytes"},
		{name: "NUL in table name", opts: []Option{WithTableName("a\x00b")}, wantErr: "no NUL"},
		{name: "bad netns fd", opts: []Option{WithNetNS(-1)}, wantErr: "firewall: netns fd -1: not a file descriptor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := New(discard(), tt.opts...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New = %v, want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g.table.Name != tt.table || g.table.Family != nftables.TableFamilyINet {
				t.Errorf("table %+v", g.table)
			}
		})
	}
}

func TestNilLogger(t *testing.T) {
	rec := &recorder{}
	g, err := New(nil, withTestDial(rec.dial))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Apply(goldenSpecs[1].spec); err != nil {
		t.Fatal(err)
	}
}

func TestTableNameInBatch(t *testing.T) {
	rec := &recorder{}
	if err := rec.guard(t, WithTableName("l4raw-b")).Apply(goldenSpecs[1].spec); err != nil {
		t.Fatal(err)
	}
	for _, m := range rec.sends[0][1 : len(rec.sends[0])-1] {
		if !bytes.Contains(m.Data, []byte("l4raw-b\x00")) {
			t.Errorf("message %s lacks the table name", dumpBatch([]netlink.Message{m}))
		}
	}
}

func TestClosed(t *testing.T) {
	rec := &recorder{}
	g := rec.guard(t)
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := g.Apply(Spec{}); err == nil || !strings.Contains(err.Error(), "guard is closed") {
		t.Errorf("Apply after Close = %v", err)
	}
	if err := g.Remove(); err == nil {
		t.Error("Remove after Close succeeded")
	}
	if _, err := g.Exists(); err == nil {
		t.Error("Exists after Close succeeded")
	}
	if _, err := g.Counters(); err == nil {
		t.Error("Counters after Close succeeded")
	}
	if len(rec.sends) != 0 {
		t.Errorf("%d sends after Close", len(rec.sends))
	}
}

func TestRuleText(t *testing.T) {
	rules, err := goldenSpecs[2].spec.rules()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"ip daddr 198.18.0.100 tcp dport 80",
		"ip daddr 198.18.0.100 tcp dport 8000-8099",
		"ip daddr 198.18.0.1 tcp dport 61000-65535",
		"ip saddr 198.18.1.10 tcp sport 8080 fib daddr type != local",
		"ip saddr 198.18.1.11 tcp sport 8080 fib daddr type != local",
	}
	if len(rules) != len(want) {
		t.Fatalf("%d rules, want %d", len(rules), len(want))
	}
	for i, r := range rules {
		if r.text != want[i] {
			t.Errorf("rule %d = %q, want %q", i, r.text, want[i])
		}
	}
}
