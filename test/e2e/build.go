//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// binDir is the temporary directory the binaries of this run are built
// into, created on first use and removed by Main.
var binDir = sync.OnceValues(func() (string, error) {
	return os.MkdirTemp("", "l4t-bin-")
})

// builds holds one lazily built binary per command, so that a test needing
// only l4echo runs while cmd/l4raw does not build.
var builds = struct {
	l4raw, l4echo func() (string, error)
}{
	l4raw:  sync.OnceValues(func() (string, error) { return build("l4raw") }),
	l4echo: sync.OnceValues(func() (string, error) { return build("l4echo") }),
}

// buildTimeout bounds one "go build": a cold build of l4raw with its
// dependencies takes well under a minute here.
const buildTimeout = 5 * time.Minute

// build compiles ./cmd/<name> of this module as a static binary.
func build(name string) (string, error) {
	dir, err := binDir()
	if err != nil {
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	gomod, _, code, err := execute(CommandTimeout, "go", "env", "GOMOD")
	gomod = strings.TrimSpace(gomod)
	if err != nil || code != 0 || gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("build %s: find the module root (go env GOMOD = %q): %v", name, gomod, err)
	}
	out := filepath.Join(dir, name)
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, "./cmd/"+name)
	cmd.Dir = filepath.Dir(gomod)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build ./cmd/%s: %v\n%s", name, err, b)
	}
	return out, nil
}

// removeBinaries deletes the build directory if one was made.
func removeBinaries() {
	if dir, err := binDir(); err == nil {
		os.RemoveAll(dir)
	}
}

// L4echo returns the path of the l4echo binary, built once per run.
func L4echo(t testing.TB) string {
	t.Helper()
	p, err := builds.l4echo()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// L4raw returns the path of the l4raw binary, built once per run.
func L4raw(t testing.TB) string {
	t.Helper()
	p, err := builds.l4raw()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Binaries returns the paths of l4raw and l4echo, built once per run into a
// temporary directory with CGO_ENABLED=0.
func Binaries(t testing.TB) (l4raw, l4echo string) {
	t.Helper()
	return L4raw(t), L4echo(t)
}
