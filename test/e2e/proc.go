//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// spawnRequest asks the spawner thread to start a command.
type spawnRequest struct {
	cmd  *exec.Cmd
	done chan error
}

// spawner starts every child process from one OS thread that never exits.
// Children get PR_SET_PDEATHSIG=SIGKILL so that nothing outlives a test
// binary killed by a timeout, and Linux sends that signal when the parent
// *thread* exits: forking from an arbitrary thread of the Go runtime could
// kill a child whenever that thread is retired.
var spawner = sync.OnceValue(func() chan<- spawnRequest {
	ch := make(chan spawnRequest)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread lives as long as the process
		for r := range ch {
			r.done <- r.cmd.Start()
		}
	}()
	return ch
})

// startCmd starts cmd in its own process group, killed with the test binary.
func startCmd(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	done := make(chan error, 1)
	spawner() <- spawnRequest{cmd: cmd, done: done}
	return <-done
}

// waitDelay bounds Wait after the process exited while a straggler it left
// still holds its output pipes.
const waitDelay = time.Second

// execute runs argv in the foreground, bounded by timeout. err is set only
// when the command could not run or timed out; a non-zero exit is code.
func execute(timeout time.Duration, name string, args ...string) (stdout, stderr string, code int, err error) {
	return executeInput(timeout, "", name, args...)
}

// executeInput is execute with stdin.
func executeInput(timeout time.Duration, stdin, name string, args ...string) (stdout, stderr string, code int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := startCmd(cmd); err != nil {
		return "", "", -1, err
	}
	werr := cmd.Wait()
	if ctx.Err() != nil {
		return so.String(), se.String(), -1, fmt.Errorf("timed out after %v", timeout)
	}
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		return so.String(), se.String(), ee.ExitCode(), nil
	}
	if werr != nil {
		return so.String(), se.String(), -1, werr
	}
	return so.String(), se.String(), 0, nil
}

// outputLimit caps what a Proc keeps of its output (16 MiB): a runaway
// logger must not exhaust the test's memory.
const outputLimit = 16 << 20

// logTail is how much of a Proc's output a failed test logs (64 KiB).
const logTail = 64 << 10

// syncBuffer is an output buffer written by the exec copier goroutines and
// read by the test.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	dropped int
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := outputLimit - b.buf.Len(); room < len(p) {
		b.buf.Write(p[:max(room, 0)])
		b.dropped += len(p) - max(room, 0)
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped > 0 {
		return fmt.Sprintf("%s\n[%d bytes dropped]\n", b.buf.String(), b.dropped)
	}
	return b.buf.String()
}

// teeWriter writes to a stdout buffer and the combined one.
type teeWriter struct{ a, b *syncBuffer }

func (w teeWriter) Write(p []byte) (int, error) {
	w.a.Write(p)
	return w.b.Write(p)
}

// Proc is a process running in the background inside a namespace.
type Proc struct {
	name   string // for messages: "ns: argv"
	cmd    *exec.Cmd
	out    syncBuffer // stdout and stderr as they came
	stdout syncBuffer
	done   chan struct{}
	state  *os.ProcessState // set when done is closed
}

// stopTimeout is how long Stop waits after SIGTERM before SIGKILL.
const stopTimeout = 5 * time.Second

// Start runs args inside the namespace in the background. At the end of the
// test it is stopped if still running, and its output is logged if the
// test failed.
func (n *NS) Start(t testing.TB, args ...string) *Proc {
	t.Helper()
	p := &Proc{name: n.Name + ": " + strings.Join(args, " "), done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", n.Name}, args...)...)
	p.cmd.Stdout = teeWriter{&p.stdout, &p.out}
	p.cmd.Stderr = &p.out
	p.cmd.WaitDelay = waitDelay
	if err := startCmd(p.cmd); err != nil {
		t.Fatalf("%s: start: %v", p.name, err)
	}
	go func() {
		p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.Running() {
			p.Stop()
		}
		if t.Failed() {
			out := p.Output()
			if len(out) > logTail {
				out = "[...]" + out[len(out)-logTail:]
			}
			t.Logf("%s (exit code %d) output:\n%s", p.name, p.state.ExitCode(), out)
		}
	})
	return p
}

func (p *Proc) String() string { return p.name }

// Pid is the process's PID ("ip netns exec" execs the command, so it is the
// command's own PID).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Running tells whether the process has not exited yet.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Signal sends sig to the process (not to its children).
func (p *Proc) Signal(sig syscall.Signal) error {
	if !p.Running() {
		return os.ErrProcessDone
	}
	return syscall.Kill(p.Pid(), sig)
}

// Stop sends SIGTERM, waits up to 5 s, then SIGKILLs the process group, and
// returns the exit code (-1 if a signal ended it).
func (p *Proc) Stop() int {
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
	}
	return p.Kill()
}

// Kill SIGKILLs the process and its process group, and returns the exit
// code once it is gone (-1 if a signal ended it).
func (p *Proc) Kill() int {
	if p.Running() {
		// The whole group: a shell's children too. Once the process has
		// exited its group is left alone; namespace deletion kills stragglers.
		syscall.Kill(-p.Pid(), syscall.SIGKILL)
	}
	<-p.done // bounded: SIGKILL cannot be caught, and pipes close after waitDelay
	return p.state.ExitCode()
}

// Wait waits up to timeout for the process to exit and returns its exit
// code (-1 if a signal ended it); after timeout it returns an error and the
// process keeps running.
func (p *Proc) Wait(timeout time.Duration) (int, error) {
	select {
	case <-p.done:
		return p.state.ExitCode(), nil
	case <-time.After(timeout):
		return 0, fmt.Errorf("%s: still running after %v", p.name, timeout)
	}
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Output is everything the process wrote to stdout and stderr so far.
func (p *Proc) Output() string { return p.out.String() }

// Stdout is what the process wrote to stdout so far.
func (p *Proc) Stdout() string { return p.stdout.String() }

// waitPoll is how often WaitFor looks at the output.
const waitPoll = 5 * time.Millisecond

// WaitFor waits until the output contains substr; it fails the test when the
// process exits first or timeout passes.
func (p *Proc) WaitFor(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for tick := time.NewTicker(waitPoll); ; {
		if strings.Contains(p.Output(), substr) {
			tick.Stop()
			return
		}
		select {
		case <-p.done:
			if strings.Contains(p.Output(), substr) {
				return
			}
			t.Fatalf("%s: exited (code %d) before printing %q; output:\n%s", p.name, p.state.ExitCode(), substr, p.Output())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %q in output after %v; output:\n%s", p.name, substr, timeout, p.Output())
		}
	}
}

// CPUTime is the CPU time (user + system) the process used: from
// /proc/PID/stat while it runs, from its resource usage once it exited.
func (p *Proc) CPUTime(t testing.TB) time.Duration {
	t.Helper()
	if !p.Running() {
		return p.state.UserTime() + p.state.SystemTime()
	}
	d, err := cpuTime(p.Pid())
	if err != nil && !p.Running() {
		return p.state.UserTime() + p.state.SystemTime()
	}
	if err != nil {
		t.Fatalf("%s: cpu time: %v", p.name, err)
	}
	return d
}
