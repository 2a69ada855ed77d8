package neigh

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

func TestUsableState(t *testing.T) {
	tests := []struct {
		state uint16
		want  bool
	}{
		{unix.NUD_NONE, false},
		{unix.NUD_INCOMPLETE, false},
		{unix.NUD_FAILED, false},
		{unix.NUD_REACHABLE, true},
		{unix.NUD_STALE, true},
		{unix.NUD_DELAY, true},
		{unix.NUD_PROBE, true},
		{unix.NUD_PERMANENT, true},
		{unix.NUD_NOARP, true},
		{unix.NUD_INCOMPLETE | unix.NUD_FAILED, false},
		{0x100, false}, // a bit the kernel does not define
	}
	for _, tt := range tests {
		t.Run(stateString(tt.state), func(t *testing.T) {
			if got := usableState(tt.state); got != tt.want {
				t.Errorf("usableState(%s) = %v, want %v", stateString(tt.state), got, tt.want)
			}
			e := neighEntry{ip: netip.MustParseAddr("198.18.3.2"), state: tt.state, mac: mac(2, 0, 0, 0, 0, 2), hasMAC: true}
			if got := e.usable(); got != tt.want {
				t.Errorf("entry in %s with MAC usable = %v, want %v", stateString(tt.state), got, tt.want)
			}
			e.hasMAC = false
			if e.usable() {
				t.Errorf("entry in %s without MAC usable", stateString(tt.state))
			}
		})
	}
}

func TestStateString(t *testing.T) {
	tests := []struct {
		state uint16
		want  string
	}{
		{unix.NUD_NONE, "NONE"},
		{unix.NUD_REACHABLE, "REACHABLE"},
		{unix.NUD_INCOMPLETE, "INCOMPLETE"},
		{unix.NUD_PERMANENT, "PERMANENT"},
		{unix.NUD_STALE | unix.NUD_NOARP, "STALE|NOARP"},
		{0x280, "PERMANENT|0x200"},
		{0x400, "0x400"},
	}
	for _, tt := range tests {
		if got := stateString(tt.state); got != tt.want {
			t.Errorf("stateString(%#x) = %q, want %q", tt.state, got, tt.want)
		}
	}
}
