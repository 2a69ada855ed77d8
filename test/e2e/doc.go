//go:build e2e

// Package e2e runs l4raw for real: network namespaces joined by veth pairs
// through a bridge, l4echo backends and clients, and the kernel's own
// counters as the referee.
//
// Run it as root (it needs CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_ADMIN for
// "ip netns"):
//
//	go test -tags e2e -count=1 -v ./test/e2e/
//
// Without root every test fails with a message saying so: an e2e run that
// silently skips everything would look green.
//
// # Rules the harness enforces
//
//   - Addresses come only from 198.18.0.0/15 (RFC 2544 benchmarking range).
//   - Namespaces are only ones the harness created, named l4t<id>-<role>
//     with a 5-character random id shared by one topology (at most 13
//     characters, so names derived from them stay within the 15 of IFNAMSIZ).
//     Each is marked as ours by the alias of its lo, "l4t-e2e owner=PID
//     start=TICKS": the test process that owns it and its start time.
//   - The root namespace's network configuration is never touched: veth
//     pairs are created inside the namespaces, never moved out of the root.
//   - Every namespace gets lo up, IPv6 off (no DAD or router solicitation
//     noise in captures) and TCP congestion control cubic when the host
//     allows it (see below). Veth offloads stay at their defaults (TSO, GSO,
//     checksum offload on): the balancer must cope with them.
//   - Everything is removed with t.Cleanup, even when a test fails:
//     processes are stopped, then namespaces deleted. TestMain (see Main)
//     also removes what a crashed earlier run left: namespaces whose owner
//     process is gone. Namespaces of a run still in progress, and ones
//     without our mark, are left alone.
//   - Every wait is bounded in count and time; commands are bounded by
//     CommandTimeout.
//
// # Congestion control
//
// A namespace's default TCP congestion control can only be one of the host's
// net.ipv4.tcp_allowed_congestion_control, a host-wide setting the harness
// does not change. When cubic is not allowed there, namespaces keep the
// inherited default, and the l4echo processes the harness starts pass
// "--cc cubic", which sets it per socket (allowed with CAP_NET_ADMIN).
//
// # API
//
// Binaries:
//
//	func Binaries(t) (l4raw, l4echo string) // built once per run, CGO_ENABLED=0
//	func L4echo(t) string                   // only l4echo: works while l4raw does not build
//	func L4raw(t) string
//
// Namespaces and processes:
//
//	func NewNS(t, role) *NS                 // a lone namespace
//	func (n *NS) Run(t, args...) string     // ip netns exec; fails the test on a non-zero exit
//	func (n *NS) RunStatus(t, args...) (stdout string, code int)
//	func (n *NS) Command(ctx, args...) *exec.Cmd
//	func (n *NS) Start(t, args...) *Proc    // background; output logged if the test fails
//	func (n *NS) Counters(t) map[string]uint64  // /proc/net/snmp + netstat, nstat names
//	func (n *NS) Counter(t, name) uint64
//	func (n *NS) TCPOutRsts(t) uint64       // RSTs the kernel sent
//	func (p *Proc) Pid() / Signal(sig) / Stop() int / Kill() / Wait(timeout) (int, error)
//	func (p *Proc) WaitFor(t, substr, timeout) / Output() / Stdout() / CPUTime(t)
//	func CPUTime(t, pid) time.Duration      // utime+stime of a running process
//
// Topologies (see NewLAN and NewRouter for the addresses):
//
//	func NewLAN(t, backends) *LAN           // one /24, switch in its own namespace
//	func NewRouter(t, backends) *Router     // client net and backend net, lb routes
//	func (tp *Topology) StartBackends(t, port) []*Proc
//
// l4echo as a client, with its JSON parsed:
//
//	func (n *NS) EchoGet(t, url, count, parallel, extra...) GetSummary
//	func (n *NS) EchoDownload(t, url, bytes, extra...) Transfer
//	func (n *NS) EchoUpload(t, url, bytes, extra...) Transfer
//	func (n *NS) EchoConnect(t, addr, timeout) ConnectResult
//
// Tests in this package call these from the test goroutine (they use
// t.Fatal). The self-test is harness_test.go.
package e2e
