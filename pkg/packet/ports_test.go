package packet

import "testing"

func TestPortRange(t *testing.T) {
	for _, c := range []struct {
		in   string
		want PortRange
		err  bool
	}{
		{"61000-65535", PortRange{Lo: 61000, Hi: 65535}, false},
		{"8080", PortRange{Lo: 8080, Hi: 8080}, false},
		{" 1-2", PortRange{}, true},
		{"0-10", PortRange{}, true},
		{"10-5", PortRange{}, true},
		{"1-65536", PortRange{}, true},
		{"+80", PortRange{}, true},
		{"a-b", PortRange{}, true},
		{"", PortRange{}, true},
	} {
		got, err := ParsePortRange(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("%q: %v %v", c.in, got, err)
		}
	}
	r := PortRange{Lo: 61000, Hi: 65535}
	if r.String() != "61000-65535" || (PortRange{Lo: 80, Hi: 80}).String() != "80" || r.Len() != 4536 || !r.Contains(61000) || r.Contains(60999) {
		t.Error("methods")
	}
	if (PortRange{}).Len() != 0 || (PortRange{}).Contains(0) || !(PortRange{}).IsZero() {
		t.Error("zero value")
	}
	b, err := r.MarshalText()
	var back PortRange
	if err != nil || back.UnmarshalText(b) != nil || back != r {
		t.Error("text round trip")
	}
	if _, err := (PortRange{Lo: 0, Hi: 5}).MarshalText(); err == nil {
		t.Error("port 0 marshalled")
	}
}
