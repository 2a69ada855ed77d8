package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse checks that no input panics, that every error is one line in our
// format, and that an accepted Spec is already valid and filled.
func FuzzParse(f *testing.F) {
	seeds, err := filepath.Glob("../../testdata/config/*.yaml")
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seed files: %v", err)
	}
	for _, name := range seeds {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"services: [{vip: 198.18.0.100, ports: [80, 443], backends: [198.18.0.21, {address: 198.18.0.22, weight: 0}]}]",
		"services: [{vip: 198.18.0.100, port: 80, backends: [198.18.0.21:80, 198.18.0.21]}]",
		"services: *a",
		"a: &a [*a]",
		"services:\n  - &s {vip: 198.18.0.1, port: 1, backends: [198.18.0.2]}\n  - *s\n",
		"nat_ports: 1024-1023\nsnat: ['::ffff:198.18.0.2']",
		"log: {level: \"\\u0000\"}",
		"timeouts: {syn: 1e400s}",
		"max_conns: 0o777777777777777",
		"? !!binary AAAA\n: 1",
		"services: [{vip: !!int 198.18.0.1}]",
		"health: {type: http, path: /h, status: 204, host: a}\nservices: [{vip: 198.18.0.1, port: 1, health: {type: tcp}, backends: [198.18.0.2]}]",
		"health: {type: send-expect, send: \"HEALTH CHECK\\r\\n\", expect: OK}\nservices: [{vip: 198.18.0.1, port: 1, backends: [198.18.0.2]}]",
		"services: [{vip: 198.18.0.1, port: 1, health: {type: send-expect, expect: \"\\0\"}, backends: [198.18.0.2]}]",
		"api: '[::1]:9478'\nhealth: {passive: 0}\nservices: [{vip: 198.18.0.1, port: 1, scheduler: maglev, maint_flows: reset, backends: [{address: 198.18.0.2, state: drain}, {address: 198.18.0.3, weight: 0, state: maint}]}]",
		"api: off\nservices: [{vip: 198.18.0.1, port: 1, health: {passive: 10000}, backends: [{address: 198.18.0.2, state: ''}]}]",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("fuzz.yaml", data)
		if err != nil {
			msg := err.Error()
			if strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("multi-line error: %q", msg)
			}
			if !strings.HasPrefix(msg, "config: fuzz.yaml") {
				t.Fatalf("error without position: %q", msg)
			}
			return
		}
		before := cloneSpec(s)
		if err := s.Validate(); err != nil {
			t.Fatalf("Parse accepted a Spec that Validate rejects: %v", err)
		}
		if !reflect.DeepEqual(before, s) {
			t.Fatalf("Validate changed a parsed Spec:\n%+v\n%+v", before, s)
		}
	})
}

func cloneSpec(s Spec) Spec {
	c := s
	c.Services = append([]Service(nil), s.Services...)
	for i := range c.Services {
		c.Services[i].Ports = append([]uint16(nil), s.Services[i].Ports...)
		c.Services[i].Backends = append([]Backend(nil), s.Services[i].Backends...)
	}
	c.Interfaces = append([]string(nil), s.Interfaces...)
	c.SNAT = append(c.SNAT[:0:0], s.SNAT...)
	return c
}
