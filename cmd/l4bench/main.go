// Command l4bench is the benchmark kit of l4raw (scripts/bench.sh drives it):
//
//   - serve: the backend of the short-connection test; it reads a one-line
//     request, answers and closes first, as an HTTP/1.0 server does;
//   - load: the short-connection load generator (N workers for T seconds);
//   - proxy: a round-robin io.Copy TCP proxy, the typical Go alternative to
//     a layer-4 balancer, measured as mode "goproxy";
//   - wait: polls a TCP connect until it succeeds (readiness of a service);
//   - measure: runs one test command (iperf3 or load) and records it as a
//     sample, with the balancer's CPU time and the machine's;
//   - report: merges the samples into results.json and renders results.md
//     and chart.svg.
//
// It uses only the standard library and the project's internal/cli, and
// builds as a static binary.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/l4raw/l4raw/internal/cli"
)

// Exit codes: 0 success, 1 the operation failed, 2 the command line is wrong.
const (
	exitOK    = cli.ExitOK
	exitFail  = cli.ExitFail
	exitUsage = cli.ExitUsage
)

const usage = `usage: l4bench <command> [flags]

commands:
  serve    --listen IP:PORT [--reply-bytes N] [--cc ALG]
                          backend: read a request line, answer, close first
  load     --target IP:PORT [--workers N] [--duration D] [--source-addrs A,B]
           [--request-bytes N] [--reply-bytes N] [--timeout D] [--cc ALG] [--json]
                          short connections: connect, request, read to EOF, close
  proxy    --listen IP:PORT --backend IP:PORT[,IP:PORT...] [--cc ALG]
                          round-robin io.Copy TCP proxy
  wait     --target IP:PORT [--timeout D]
                          poll a TCP connect until it succeeds
  measure  --mode M --test T --rep N --kind iperf3|load --out FILE [--pid P]
           [--timeout D] -- COMMAND [ARGS...]
                          run one test and write its sample (JSON)
  report   --dir DIR [--in FILE]
                          DIR/samples/*.json + DIR/meta.txt -> results.json,
                          results.md, chart.svg in DIR

run "l4bench <command> -h" for the flags of a command.
`

// env carries what a command needs from the process, so that commands run in
// unit tests without touching the real one.
type env struct {
	ctx    context.Context
	stdout io.Writer
	stderr io.Writer
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
	return cli.Dispatch(e.stdout, e.stderr, "l4bench", usage, args, []cli.Command{
		{Name: "serve", Run: with(runServe)}, {Name: "load", Run: with(runLoad)}, {Name: "proxy", Run: with(runProxy)},
		{Name: "wait", Run: with(runWait)}, {Name: "measure", Run: with(runMeasure)}, {Name: "report", Run: with(runReport)},
	})
}
