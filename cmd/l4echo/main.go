// Command l4echo is the HTTP backend and client used by the l4raw demo and its
// end-to-end tests: "serve" answers with its name and the TCP peer it sees,
// streams verifiable bytes and sinks uploads; "get", "download", "upload" and
// "connect" drive it and print summaries that tests parse (--json).
//
// It uses nothing beyond the standard library, so it builds as a static
// binary for a scratch container image.
package main

import (
	"context"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/l4raw/l4raw/internal/cli"
)

// Exit codes: 0 success, 1 the operation failed (a request, a check), 2 the
// command line is wrong.
const (
	exitOK    = cli.ExitOK
	exitFail  = cli.ExitFail
	exitUsage = cli.ExitUsage
)

const usage = `usage: l4echo <command> [flags]

commands:
  serve     --listen ADDR --name NAME [--cc ALG]
                                               HTTP backend
  get       --url URL [--count N] [--parallel P] [--timeout D] [--json]
                                               N requests, each on a new connection
  download  --url URL --bytes N [--seed S] [--json]
                                               fetch N verifiable bytes from /bytes
  upload    --url URL --bytes N [--seed S] [--json]
                                               post N bytes to /sink, check count and sha256
  connect   --addr IP:PORT [--timeout D] [--json]
                                               one TCP connect, prints the result kind

every command takes --cc ALG: the TCP congestion control of its sockets.
run "l4echo <command> -h" for the flags of a command.
`

// dialFunc opens a connection; tests replace it with in-memory pipes.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// env carries what a command needs from the process, so commands run in
// unit tests without touching the real one.
type env struct {
	ctx    context.Context
	stdout io.Writer
	stderr io.Writer
	dial   dialFunc // nil: real sockets, see withCC
}

// withCC returns e dialing real sockets with TCP congestion control cc
// (empty: the namespace default), unless e already has a dial function.
func (e env) withCC(cc string) env {
	if e.dial == nil {
		e.dial = (&net.Dialer{Control: ccControl(cc)}).DialContext
	}
	return e
}

// ccControl sets TCP_CONGESTION on a socket before connect or listen.
func ccControl(cc string) func(network, address string, c syscall.RawConn) error {
	return cli.SockOpts(cc, false)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	e := env{ctx: ctx, stdout: os.Stdout, stderr: os.Stderr}
	code := run(e, os.Args[1:])
	stop()
	os.Exit(code)
}

func run(e env, args []string) int {
	with := func(f func(env, []string) int) func([]string) int {
		return func(a []string) int { return f(e, a) }
	}
	return cli.Dispatch(e.stdout, e.stderr, "l4echo", usage, args, []cli.Command{
		{Name: "serve", Run: with(runServe)}, {Name: "get", Run: with(runGet)}, {Name: "download", Run: with(runDownload)},
		{Name: "upload", Run: with(runUpload)}, {Name: "connect", Run: with(runConnect)},
	})
}
