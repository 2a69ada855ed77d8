package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/l4raw/l4raw/pkg/api"
	"github.com/l4raw/l4raw/pkg/api/apitest"
)

// fakeDaemon serves f's API on an in-memory listener for the test's
// duration and returns a ctl wired to it, its outputs and a function that
// stops the daemon (as if it exited).
func fakeDaemon(t *testing.T, f *apitest.Fake) (c func() *ctl, stop func()) {
	t.Helper()
	l := apitest.NewPipeListener()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { api.NewServer(f, nil).Serve(ctx, l); close(done) }()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("API server did not stop within 10 s")
		}
	}
	t.Cleanup(stop)
	c = func() *ctl {
		return &ctl{
			now: func() time.Time { return apitest.SampleStartedAt().Add(26*time.Hour + 3*time.Minute + 4*time.Second) },
			client: func(addr string) *api.Client {
				hc := l.HTTPClient()
				hc.Timeout = 10 * time.Second
				return api.NewClient(addr, api.WithHTTPClient(hc))
			},
		}
	}
	return c, stop
}

func runFake(mk func() *ctl, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	c := mk()
	c.stdout, c.stderr = &out, &errb
	code = c.run(args)
	return code, out.String(), errb.String()
}

// TestCtlTables: the human output of each read command, column for column.
func TestCtlTables(t *testing.T) {
	mk, _ := fakeDaemon(t, apitest.Sample())
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"services"}, `
NAME  VIP           PORTS   MODE     SCHEDULER  BACKENDS  UP  ACTIVE  TOTAL
web   198.18.0.100  80,443  fullnat  rr         2         1   3       40
api   198.18.0.101  8000    dnat     rr         1         0   0       0
`},
		{[]string{"backends"}, `
SERVICE  BACKEND           STATE  HEALTH   WEIGHT  ACTIVE  TOTAL  IN        OUT      NAT  CHECK
web      198.18.0.21:8080  ready  up       1       2       30     46.9 KiB  5.0 MiB  2    0.4ms connected
web      198.18.0.22:8080  drain  down     2       1       10     1.5 KiB   3.0 GiB  1    1.1ms connection refused
api      198.18.0.31:9000  maint  unknown  1       0       0      0 B       0 B      0    -
`},
		{[]string{"backends", "api"}, `
SERVICE  BACKEND           STATE  HEALTH   WEIGHT  ACTIVE  TOTAL  IN   OUT  NAT  CHECK
api      198.18.0.31:9000  maint  unknown  1       0       0      0 B  0 B  0    -
`},
		{[]string{"flows"}, `
SERVICE  CLIENT             VIP              BACKEND           SNAT              STATE        IDLE
web      198.18.1.10:40000  198.18.0.100:80  198.18.0.21:8080  198.18.0.2:61000  ESTABLISHED  0.5s
web      198.18.1.10:40001  198.18.0.100:80  198.18.0.21:8080  198.18.0.2:61001  ESTABLISHED  1.5s
web      198.18.1.10:40002  198.18.0.100:80  198.18.0.22:8080  198.18.0.2:61002  ESTABLISHED  2.5s
flows 1-3 of 3
`},
		{[]string{"flows", "--limit", "1", "--service", "web"}, `
SERVICE  CLIENT             VIP              BACKEND           SNAT              STATE        IDLE
web      198.18.1.10:40000  198.18.0.100:80  198.18.0.21:8080  198.18.0.2:61000  ESTABLISHED  0.5s
flows 1-1 of 3; next page: l4raw ctl flows --service "web" --limit 1 --offset 1
`},
		{[]string{"flows", "--backend=198.18.0.22:8080", "--offset", "1"}, `
no flows at offset 1 (1 in all)
`},
		{[]string{"flows", "--service", "api"}, `
no flows
`},
	}
	for _, k := range cases {
		code, out, errs := runFake(mk, k.args...)
		if code != 0 || errs != "" {
			t.Errorf("%q: exit %d, stderr %q", k.args, code, errs)
		}
		if want := strings.TrimPrefix(k.want, "\n"); out != want {
			t.Errorf("%q:\n got:\n%s\nwant:\n%s", k.args, out, want)
		}
	}
}

func TestCtlStatus(t *testing.T) {
	mk, _ := fakeDaemon(t, apitest.Sample())
	code, out, errs := runFake(mk, "status")
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	head := `l4raw v1.2.3 (commit abc1234)
started              2026-01-02T03:04:05Z (up 26h3m4s)
services             2
connections          3 of 1048576
rx_frames            1000
rx_bytes             1500000
tx_frames            990
tx_bytes             1400000
conns_new            40
`
	if !strings.HasPrefix(out, head) {
		t.Fatalf("status:\n%s\nwant it to start with:\n%s", out, head)
	}
	// Counters in the dump's order: drops before malformed before socket.
	lines := strings.Split(out, "\n")
	idx := func(name string) int {
		return slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, name+" ") })
	}
	if !(idx("nat_early_reuse") < idx("drop_no_flow") && idx("drop_no_flow") < idx("drop_no_interface") &&
		idx("drop_no_interface") < idx("malformed_runt") && idx("malformed_not_tcp") < idx("socket_truncated")) || idx("socket_tx_errors") < 0 {
		t.Errorf("counters out of order:\n%s", out)
	}
	if n := strings.Count(out, "\n"); n != 4+22 {
		t.Errorf("%d lines, want 4 + 22 counters:\n%s", n, out)
	}
}

// TestCtlChanges: each changing command reaches the Controller and
// reports the backend afterwards in one line.
func TestCtlChanges(t *testing.T) {
	f := apitest.Sample()
	mk, _ := fakeDaemon(t, f)
	cases := []struct {
		args []string
		out  string
		call string
	}{
		{[]string{"add", "web", "198.18.0.23:8080"}, "web 198.18.0.23:8080: added; ready, weight 1, health unknown, 0 active connections\n", "AddBackend web 198.18.0.23:8080 1"},
		{[]string{"add", "--weight", "3", "web", "198.18.0.24"}, "web 198.18.0.24: added; ready, weight 3, health unknown, 0 active connections\n", "AddBackend web 198.18.0.24 3"},
		{[]string{"add", "web", "198.18.0.25:8080", "--weight=0"}, "web 198.18.0.25:8080: added; ready, weight 0, health unknown, 0 active connections\n", "AddBackend web 198.18.0.25:8080 0"},
		{[]string{"drain", "web", "198.18.0.21:8080"}, "web 198.18.0.21:8080: drain, weight 1, health up, 2 active connections\n", "SetState web 198.18.0.21:8080 drain"},
		{[]string{"maint", "web", "198.18.0.21:8080"}, "web 198.18.0.21:8080: maint, weight 1, health up, 2 active connections\n", "SetState web 198.18.0.21:8080 maint"},
		{[]string{"ready", "web", "198.18.0.22:8080"}, "web 198.18.0.22:8080: ready, weight 2, health down, 1 active connection\n", "SetState web 198.18.0.22:8080 ready"},
		{[]string{"weight", "web", "198.18.0.22:8080", "5"}, "web 198.18.0.22:8080: ready, weight 5, health down, 1 active connection\n", "SetWeight web 198.18.0.22:8080 5"},
		{[]string{"remove", "web", "198.18.0.21:8080"}, "web 198.18.0.21:8080: removed; it had 2 active connections and 30 in all\n", "RemoveBackend web 198.18.0.21:8080"},
		{[]string{"reload"}, "reloaded: 2 services, 3 connections in the table\n", "Reload"},
	}
	for i, k := range cases {
		code, out, errs := runFake(mk, k.args...)
		if code != 0 || errs != "" || out != k.out {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %q", k.args, code, out, errs, k.out)
		}
		if calls := f.Calls(); len(calls) != i+1 || calls[i] != k.call {
			t.Errorf("%q: calls %q, want the last to be %q", k.args, calls, k.call)
		}
	}
}

// TestCtlJSON: --json prints the API's JSON, before or after the command.
func TestCtlJSON(t *testing.T) {
	f := apitest.Sample()
	mk, _ := fakeDaemon(t, f)
	h := api.NewServer(f, nil)
	for _, k := range []struct {
		args []string
		path string
	}{
		{[]string{"--json", "status"}, "/api/v1/status"},
		{[]string{"services", "--json"}, "/api/v1/services"},
		{[]string{"backends", "web", "--json"}, "/api/v1/services/web/backends"},
		{[]string{"--json", "flows", "--limit", "2"}, "/api/v1/flows?limit=2"},
	} {
		code, out, errs := runFake(mk, k.args...)
		if code != 0 || errs != "" {
			t.Fatalf("%q: exit %d, stderr %q", k.args, code, errs)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", k.path, nil))
		var got, want any
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%q: not JSON: %v\n%s", k.args, err, out)
		}
		json.Unmarshal(rec.Body.Bytes(), &want)
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		if !bytes.Equal(g, w) {
			t.Errorf("%q:\n got %s\nwant %s", k.args, g, w)
		}
	}
	code, out, _ := runFake(mk, "drain", "--json", "web", "198.18.0.21:8080")
	var be api.BackendInfo
	if code != 0 || json.Unmarshal([]byte(out), &be) != nil || be.State != "drain" || be.Address != "198.18.0.21:8080" {
		t.Fatalf("drain --json: exit %d, %q", code, out)
	}
}

// TestCtlUsageErrors: a wrong command line is exit 2 and one line naming
// the wrong part, and nothing reaches the daemon.
func TestCtlUsageErrors(t *testing.T) {
	f := apitest.Sample()
	mk, _ := fakeDaemon(t, f)
	cases := []struct {
		args []string
		want string
	}{
		{nil, "missing COMMAND"},
		{[]string{"stauts"}, `unknown command "stauts"`},
		{[]string{"--bogus", "status"}, "-bogus"},
		{[]string{"status", "--bogus"}, "status: flag provided but not defined: -bogus"},
		{[]string{"status", "extra"}, `status: unexpected argument "extra" (usage: l4raw ctl status)`},
		{[]string{"backends", "web", "api"}, `backends: unexpected argument "api"`},
		{[]string{"add", "web"}, "add: missing ADDR (usage: l4raw ctl add SERVICE ADDR [--weight N])"},
		{[]string{"add"}, "add: missing SERVICE"},
		{[]string{"add", "web", "198.18.0.300:80"}, `ADDR "198.18.0.300:80": want IP:PORT or IP`},
		{[]string{"add", "web", "198.18.0.23:80", "--weight", "heavy"}, `weight --weight "heavy": want an integer 0..65535`},
		{[]string{"add", "web", "198.18.0.23:80", "--weight", "65536"}, `"65536"`},
		{[]string{"add", "web", "198.18.0.23:80", "--weight"}, "flag needs an argument: -weight"},
		{[]string{"remove", "web", "backend-1"}, `ADDR "backend-1"`},
		{[]string{"drain", "web"}, "drain: missing ADDR"},
		{[]string{"weight", "web", "198.18.0.21:8080"}, "weight: missing N"},
		{[]string{"weight", "web", "198.18.0.21:8080", "-1"}, `weight N "-1": want an integer 0..65535`},
		{[]string{"weight", "web", "198.18.0.21:8080", "1.5"}, `weight N "1.5"`},
		{[]string{"flows", "--limit", "0"}, `flows: --limit "0": want an integer 1..10000`},
		{[]string{"flows", "--limit", "10001"}, `--limit "10001"`},
		{[]string{"flows", "--offset", "-3"}, `--offset "-3"`},
		{[]string{"flows", "--backend", "198.18.0.21"}, `flows: --backend "198.18.0.21": want IP:PORT`},
		{[]string{"flows", "web"}, `flows: unexpected argument "web"`},
		{[]string{"--api", "localhost", "status"}, `--api "localhost": want HOST:PORT`},
		{[]string{"status", "--api", "off"}, `--api "off": want HOST:PORT`},
	}
	for _, k := range cases {
		code, out, errs := runFake(mk, k.args...)
		if code != exitUsage {
			t.Errorf("%q: exit %d, want 2 (stderr %q)", k.args, code, errs)
		}
		if out != "" || strings.Count(errs, "\n") != 1 || !strings.HasPrefix(errs, "l4raw ctl: ") || !strings.Contains(errs, k.want) {
			t.Errorf("%q: stdout %q, stderr %q; want one line naming %q", k.args, out, errs, k.want)
		}
	}
	if calls := f.Calls(); len(calls) != 0 {
		t.Errorf("usage errors reached the daemon: %q", calls)
	}
}

// TestCtlRuntimeErrors: what the daemon refuses is exit 1 with its message.
func TestCtlRuntimeErrors(t *testing.T) {
	mk, _ := fakeDaemon(t, apitest.Sample())
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"backends", "nope"}, `l4raw ctl: service "nope": not found` + "\n"},
		{[]string{"add", "web", "198.18.0.21:8080"}, `l4raw ctl: service "web": backend 198.18.0.21:8080: already exists` + "\n"},
		{[]string{"drain", "web", "198.18.0.99:8080"}, `l4raw ctl: service "web": backend 198.18.0.99:8080: not found` + "\n"},
		{[]string{"flows", "--service", "nope"}, `l4raw ctl: service "nope": not found` + "\n"},
	}
	for _, k := range cases {
		code, out, errs := runFake(mk, k.args...)
		if code != exitFailure || out != "" || errs != k.want {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 1 and %q", k.args, code, out, errs, k.want)
		}
	}
}

// TestCtlNoDaemon: with nothing listening, one line says where ctl looked
// and why it may be empty.
func TestCtlNoDaemon(t *testing.T) {
	mk, stop := fakeDaemon(t, apitest.Sample())
	stop()
	code, out, errs := runFake(mk, "status")
	want := "l4raw ctl: no l4raw API at 127.0.0.1:9478: connection refused (is l4raw running? it listens there unless started with --api off)\n"
	if code != exitFailure || out != "" || errs != want {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 1 and %q", code, out, errs, want)
	}
	code, _, errs = runFake(mk, "--api", "198.18.0.1:9000", "drain", "web", "198.18.0.21:8080")
	want = "l4raw ctl: no l4raw API at 198.18.0.1:9000: connection refused (is l4raw running with --api 198.18.0.1:9000?)\n"
	if code != exitFailure || errs != want {
		t.Fatalf("exit %d, stderr %q; want 1 and %q", code, errs, want)
	}
}

func TestCtlHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"status", "--help"}} {
		var out, errb bytes.Buffer
		if code := run(append([]string{"ctl"}, args...), &out, &errb); code != 0 || errb.Len() != 0 || !strings.Contains(out.String(), "Usage: l4raw ctl") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, out.String(), errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"ctl", "nonsense"}, &out, &errb); code != exitUsage {
		t.Errorf("l4raw ctl nonsense: exit %d", code)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 48000: "46.9 KiB", 5 << 20: "5.0 MiB",
		3 << 30: "3.0 GiB", 1 << 40: "1.0 TiB", 1<<64 - 1: "16.0 EiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestCtlNetns runs ctl against a real API server over TCP, in a network
// namespace of its own: the test binary re-runs itself inside it (a
// process is in one namespace; the HTTP client dials from any thread).
// There nothing listens on 127.0.0.1:9478, so the no-daemon message is the
// kernel's real ECONNREFUSED.
func TestCtlNetns(t *testing.T) {
	if os.Getenv("L4T_CTL_NETNS_CHILD") == "1" {
		ctlNetnsChild(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) to create a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("running as root but ip (iproute2) is missing: %v", err)
	}
	b := make([]byte, 4)
	rand.Read(b)
	ns := "l4t-ctl-" + hex.EncodeToString(b)
	ipCmd := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ipCmd("netns", "add", ns)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns, err, out)
		}
	})
	ipCmd("-n", ns, "link", "set", "lo", "up")
	ipCmd("-n", ns, "addr", "add", "198.18.0.1/32", "dev", "lo")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestCtlNetns$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "L4T_CTL_NETNS_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestCtlNetns") {
		t.Fatalf("in namespace %s: %v\n%s", ns, err, out)
	}
}

// ctlNetnsChild is TestCtlNetns inside the namespace.
func ctlNetnsChild(t *testing.T) {
	const addr = "198.18.0.1:9478"
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	f := apitest.Sample()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.NewServer(f, nil).Serve(ctx, l) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return within 10 s")
		}
	}()

	ctl := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(append([]string{"ctl"}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}
	if code, out, errs := ctl("--api", addr, "services"); code != 0 || !strings.Contains(out, "web   198.18.0.100  80,443") {
		t.Errorf("services: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if code, out, errs := ctl("drain", "web", "198.18.0.21:8080", "--api", "http://"+addr); code != 0 || !strings.HasPrefix(out, "web 198.18.0.21:8080: drain,") {
		t.Errorf("drain: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if calls := f.Calls(); !slices.Equal(calls, []string{"SetState web 198.18.0.21:8080 drain"}) {
		t.Errorf("calls %q", calls)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `l4raw_backend_state{backend="198.18.0.21:8080",service="web",state="drain"} 1`) {
		t.Errorf("GET /metrics: HTTP %d\n%s", resp.StatusCode, body)
	}

	want := "l4raw ctl: no l4raw API at 127.0.0.1:9478: connection refused (is l4raw running? it listens there unless started with --api off)\n"
	if code, out, errs := ctl("status"); code != exitFailure || out != "" || errs != want {
		t.Errorf("no daemon: exit %d, stdout %q, stderr %q; want 1 and %q", code, out, errs, want)
	}
}
