package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestDispatch(t *testing.T) {
	var out, errb bytes.Buffer
	ran := ""
	cmds := []Command{{Name: "a", Run: func(args []string) int { ran = "a " + strings.Join(args, " "); return 7 }}, {Name: "b", Run: func([]string) int { return 0 }}}
	if code := Dispatch(&out, &errb, "tool", "USAGE\n", []string{"a", "x"}, cmds); code != 7 || ran != "a x" {
		t.Fatalf("dispatch: %d %q", code, ran)
	}
	if code := Dispatch(&out, &errb, "tool", "USAGE\n", []string{"--help"}, cmds); code != ExitOK || out.String() != "USAGE\n" {
		t.Fatalf("help: %d %q", code, out.String())
	}
	if code := Dispatch(&out, &errb, "tool", "USAGE\n", []string{"zz"}, cmds); code != ExitUsage || errb.String() != "tool: unknown command \"zz\" (a, b)\n" {
		t.Fatalf("unknown: %d %q", code, errb.String())
	}
	errb.Reset()
	if code := Dispatch(&out, &errb, "tool", "USAGE\n", nil, cmds); code != ExitUsage || errb.String() != "USAGE\n" {
		t.Fatalf("none: %d %q", code, errb.String())
	}
}

func TestParse(t *testing.T) {
	var out, errb bytes.Buffer
	fs := NewFlagSet("tool", "cmd", "[--n N]")
	n := fs.Int("n", 0, "a number")
	if code, done := Parse(&out, &errb, fs, []string{"--n", "3"}, false); done || code != ExitOK || *n != 3 {
		t.Fatalf("parse: %d %v %d", code, done, *n)
	}
	fs = NewFlagSet("tool", "cmd", "[--n N]")
	fs.Int("n", 0, "a number")
	if code, done := Parse(&out, &errb, fs, []string{"--n", "x"}, false); !done || code != ExitUsage || strings.Count(errb.String(), "\n") != 1 || !strings.HasPrefix(errb.String(), "tool cmd: ") {
		t.Fatalf("bad value: %d %v %q", code, done, errb.String())
	}
	errb.Reset()
	fs = NewFlagSet("tool", "cmd", "")
	if code, done := Parse(&out, &errb, fs, []string{"extra"}, false); !done || code != ExitUsage || !strings.Contains(errb.String(), `"extra"`) {
		t.Fatalf("argument: %d %q", code, errb.String())
	}
	if SockOpts("", false) != nil || SockOpts("cubic", false) == nil {
		t.Fatal("SockOpts")
	}
}
