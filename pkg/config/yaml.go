package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// maxNodes bounds the work one document can cause. Node trees keep aliases
// unexpanded, but the decoder follows them, so a short file of aliases to
// aliases could otherwise cost time quadratic in its length. 2^20 nodes is
// far beyond any hand-written balancer configuration.
const maxNodes = 1 << 20

// YAML tags (https://yaml.org/spec/1.2.2/#1032-tag-resolution).
const (
	tagNull  = "!!null"
	tagBool  = "!!bool"
	tagInt   = "!!int"
	tagFloat = "!!float"
)

// Parse reads a YAML configuration (see testdata/config/example.yaml for the
// format), fills defaults and validates it. name is the file name used in
// messages. Unknown fields are errors, so a typo never silently becomes a
// default. Every error is one line naming the file, line and field:
//
//	config: l4raw.yaml:12: services[0].backends[1]: "198.18.0.300:8080": invalid address
func Parse(name string, data []byte) (Spec, error) {
	d := &yamlDoc{name: cleanName(name), locs: make(map[string]yamlLoc), budget: maxNodes}
	root, err := d.load(data)
	if err != nil {
		return Spec{}, err
	}
	s := Default()
	if p := d.spec(root, &s); p != nil {
		return Spec{}, errorFor(d, p)
	}
	if p := s.validate(); p != nil {
		return Spec{}, errorFor(d, p)
	}
	return s, nil
}

// yamlDoc decodes one document and remembers where each field was, so that
// problems found later by validate still point at a line.
type yamlDoc struct {
	name   string
	locs   map[string]yamlLoc
	budget int
}

type yamlLoc struct {
	line    int
	display string // the path as the file spells it ("services[0].port"); "" = canonical
	raw     string // the scalar as written; "" for collections
}

func (d *yamlDoc) load(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, d.syntaxError(err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, d.syntaxError(err)
	default:
		return nil, fmt.Errorf("config: %s: %w", d.pos(next.Line), errors.New("more than one document"))
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// syntaxError turns the YAML library's "yaml: line N: msg" into our format.
func (d *yamlDoc) syntaxError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, after, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				line, msg = n, after
			}
		}
	}
	return fmt.Errorf("config: %s: %w", d.pos(line), errors.New(oneLine(msg)))
}

func (d *yamlDoc) pos(line int) string {
	if line > 0 {
		return d.name + ":" + strconv.Itoa(line)
	}
	return d.name
}

// lookup finds the location of path, or of its closest recorded ancestor
// (exact reports which).
func (d *yamlDoc) lookup(path string) (l yamlLoc, exact bool) {
	if l, ok := d.locs[path]; ok {
		return l, true
	}
	for p := parentPath(path); p != ""; p = parentPath(p) {
		if l, ok := d.locs[p]; ok {
			return yamlLoc{line: l.line}, false
		}
	}
	return yamlLoc{}, false
}

func (d *yamlDoc) where(p *problem) string {
	l, exact := d.lookup(p.path)
	line := l.line
	if p.line > 0 {
		line = p.line
	}
	display := p.path
	if exact && l.display != "" {
		display = l.display
	}
	var b strings.Builder
	b.WriteString(d.pos(line))
	if display != "" {
		b.WriteString(": ")
		b.WriteString(display)
	}
	if p.hasValue {
		v := p.value
		if exact && !p.computed && l.raw != "" {
			v = l.raw
		}
		b.WriteString(": ")
		b.WriteString(quote(v))
	}
	return b.String()
}

func (d *yamlDoc) ref(path string) string {
	l, exact := d.lookup(path)
	display := path
	if exact && l.display != "" {
		display = l.display
	}
	if l.line > 0 {
		return fmt.Sprintf("%s (line %d)", display, l.line)
	}
	return display
}

// parentPath strips the last ".field" or "[i]" from path.
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

func (d *yamlDoc) mark(path string, n *yaml.Node) {
	d.locs[path] = yamlLoc{line: n.Line}
}

// maxAliasHops bounds a chain of aliases. The parser points an alias at the
// anchored node itself, so one hop is the norm; the bound only guards
// against a malformed tree.
const maxAliasHops = 8

// deref follows aliases and charges the node budget.
func (d *yamlDoc) deref(path string, n *yaml.Node) (*yaml.Node, *problem) {
	for hops := 0; n != nil && n.Kind == yaml.AliasNode; hops++ {
		if hops >= maxAliasHops || n.Alias == nil {
			return nil, &problem{path: path, line: n.Line, err: errors.New("alias too deep")}
		}
		n = n.Alias
	}
	if n == nil {
		return nil, &problem{path: path, err: errors.New("value required")}
	}
	d.budget--
	if d.budget < 0 {
		return nil, &problem{path: path, line: n.Line,
			err: fmt.Errorf("document too large (more than %d nodes once aliases are expanded)", maxNodes)}
	}
	return n, nil
}

type entry struct{ key, val *yaml.Node }

// fields reads a mapping at path whose keys must be among known. A null
// value (a key with nothing after it) is an empty mapping.
func (d *yamlDoc) fields(path string, n *yaml.Node, known ...string) (map[string]entry, *problem) {
	n, p := d.deref(path, n)
	if p != nil {
		return nil, p
	}
	if path != "" {
		d.mark(path, n)
	}
	if isNull(n) {
		return map[string]entry{}, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, &problem{path: path, line: n.Line, err: errors.New("must be a mapping (key: value)")}
	}
	out := make(map[string]entry, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, p := d.deref(path, n.Content[i])
		if p != nil {
			return nil, p
		}
		if k.Kind != yaml.ScalarNode {
			return nil, &problem{path: path, line: k.Line, err: errors.New("keys must be plain names")}
		}
		if !contains(known, k.Value) {
			return nil, &problem{path: path, line: k.Line, err: fmt.Errorf("unknown field %s", quote(k.Value))}
		}
		if prev, dup := out[k.Value]; dup {
			return nil, &problem{path: path, line: k.Line,
				err: fmt.Errorf("duplicate field %s (first at line %d)", quote(k.Value), prev.key.Line)}
		}
		out[k.Value] = entry{key: k, val: n.Content[i+1]}
	}
	return out, nil
}

// list reads a sequence; null is an empty one.
func (d *yamlDoc) list(path string, n *yaml.Node) ([]*yaml.Node, *problem) {
	n, p := d.deref(path, n)
	if p != nil {
		return nil, p
	}
	d.mark(path, n)
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, &problem{path: path, line: n.Line, err: errors.New("must be a list")}
	}
	return n.Content, nil
}

// scalar reads a single value and records it at path.
func (d *yamlDoc) scalar(path string, n *yaml.Node) (*yaml.Node, *problem) {
	n, p := d.deref(path, n)
	if p != nil {
		return nil, p
	}
	// Keep a display name set before the value was read (see service).
	d.locs[path] = yamlLoc{line: n.Line, raw: n.Value, display: d.locs[path].display}
	switch {
	case n.Kind != yaml.ScalarNode:
		return nil, &problem{path: path, line: n.Line, err: errors.New("must be a single value")}
	case isNull(n):
		return nil, &problem{path: path, line: n.Line, err: errors.New("value required")}
	}
	return n, nil
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == tagNull }

func (d *yamlDoc) str(path string, n *yaml.Node) (string, *problem) {
	n, p := d.scalar(path, n)
	if p != nil {
		return "", p
	}
	return n.Value, nil
}

// integer reads an integer that fits in 32 bits, so that a value means the
// same on 32-bit ARM.
func (d *yamlDoc) integer(path string, n *yaml.Node) (int, *problem) {
	n, p := d.scalar(path, n)
	if p != nil {
		return 0, p
	}
	var v int64
	if n.ShortTag() != tagInt || n.Decode(&v) != nil {
		return 0, bad(path, n.Value, "must be an integer")
	}
	if v < math.MinInt32 || v > math.MaxInt32 {
		return 0, bad(path, n.Value, "out of range")
	}
	return int(v), nil
}

func (d *yamlDoc) port(path string, n *yaml.Node, allowZero bool) (uint16, *problem) {
	n, p := d.scalar(path, n)
	if p != nil {
		return 0, p
	}
	var v int64
	if n.ShortTag() != tagInt || n.Decode(&v) != nil || v < 0 || v > math.MaxUint16 || (v == 0 && !allowZero) {
		return 0, bad(path, n.Value, msgInvalidPort)
	}
	return uint16(v), nil
}

func (d *yamlDoc) duration(path string, n *yaml.Node) (time.Duration, *problem) {
	n, p := d.scalar(path, n)
	if p != nil {
		return 0, p
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil || n.ShortTag() == tagInt || n.ShortTag() == tagFloat {
		// A bare number has no unit: 60 could be seconds or nanoseconds.
		return 0, bad(path, n.Value, "invalid duration (want a number with a unit, e.g. 2s)")
	}
	return v, nil
}

func (d *yamlDoc) boolean(path string, n *yaml.Node) (bool, *problem) {
	n, p := d.scalar(path, n)
	if p != nil {
		return false, p
	}
	var v bool
	if n.ShortTag() != tagBool || n.Decode(&v) != nil {
		return false, bad(path, n.Value, "must be true or false")
	}
	return v, nil
}

// The keys of each mapping, in the order they are decoded. Health comes
// before services because services inherit from it.
func topKeys() []string {
	return []string{"interfaces", "snat", "nat_ports", "max_conns", "workers", "guard", "timeouts", "log", "api", "vip_arp", "health", "services"}
}
func timeoutKeys() []string { return []string{"syn", "established", "fin", "time_wait", "close"} }
func logKeys() []string     { return []string{"level", "format"} }
func healthKeys() []string {
	return []string{"type", "interval", "timeout", "rise", "fall", "port", "passive", "path", "status", "host", "send", "expect"}
}
func serviceKeys() []string {
	return []string{"name", "vip", "port", "ports", "mode", "scheduler", "maint_flows", "health", "backends"}
}
func backendKeys() []string { return []string{"address", "weight", "state"} }

func (d *yamlDoc) spec(root *yaml.Node, s *Spec) *problem {
	top := map[string]entry{}
	if root != nil {
		var p *problem
		if top, p = d.fields("", root, topKeys()...); p != nil {
			return p
		}
	}
	for _, key := range topKeys() {
		e, ok := top[key]
		if !ok {
			continue
		}
		var p *problem
		switch key {
		case "interfaces":
			p = d.interfaces(e.val, s)
		case "snat":
			p = d.snat(e.val, s)
		case "nat_ports":
			var n *yaml.Node
			if n, p = d.scalar(key, e.val); p == nil {
				r, ok := parsePortRange(n.Value)
				if !ok {
					p = bad(key, n.Value, msgBadPortRange)
				}
				s.NATPorts = r
			}
		case "max_conns":
			s.MaxConns, p = d.integer(key, e.val)
		case "workers":
			s.Workers, p = d.integer(key, e.val)
		case "guard":
			s.Guard, p = d.boolean(key, e.val)
		case "timeouts":
			p = d.timeouts(e.val, &s.Timeouts)
		case "log":
			p = d.log(e.val, s)
		case "api":
			s.API, p = d.str(key, e.val)
		case "vip_arp":
			s.VIPARP, p = d.str(key, e.val)
		case "health":
			p = d.health(key, e.val, &s.Health)
		case "services":
			p = d.services(e.val, s)
		}
		if p != nil {
			return p
		}
	}
	return nil
}

func (d *yamlDoc) interfaces(n *yaml.Node, s *Spec) *problem {
	items, p := d.list("interfaces", n)
	if p != nil {
		return p
	}
	for i, it := range items {
		name, p := d.str(index("interfaces", i), it)
		if p != nil {
			return p
		}
		s.Interfaces = append(s.Interfaces, name)
	}
	return nil
}

func (d *yamlDoc) snat(n *yaml.Node, s *Spec) *problem {
	items, p := d.list("snat", n)
	if p != nil {
		return p
	}
	for i, it := range items {
		path := index("snat", i)
		text, p := d.str(path, it)
		if p != nil {
			return p
		}
		a, _, hasPort, msg := parseHostPort(text)
		if msg == "" && hasPort {
			msg = "port not allowed here"
		}
		if msg != "" {
			return bad(path, text, msg)
		}
		s.SNAT = append(s.SNAT, a)
	}
	return nil
}

func (d *yamlDoc) timeouts(n *yaml.Node, t *Timeouts) *problem {
	f, p := d.fields("timeouts", n, timeoutKeys()...)
	if p != nil {
		return p
	}
	dst := map[string]*time.Duration{
		"syn": &t.SYN, "established": &t.Established, "fin": &t.FIN, "time_wait": &t.TimeWait, "close": &t.Close,
	}
	for _, key := range timeoutKeys() {
		if e, ok := f[key]; ok {
			if *dst[key], p = d.duration(join("timeouts", key), e.val); p != nil {
				return p
			}
		}
	}
	return nil
}

func (d *yamlDoc) log(n *yaml.Node, s *Spec) *problem {
	f, p := d.fields("log", n, logKeys()...)
	if p != nil {
		return p
	}
	if e, ok := f["level"]; ok {
		text, p := d.str("log.level", e.val)
		if p != nil {
			return p
		}
		lvl, ok := parseLevel(text)
		if !ok {
			return bad("log.level", text, "unknown log level (want debug, info, warn or error)")
		}
		s.LogLevel = lvl
	}
	if e, ok := f["format"]; ok {
		if s.LogFormat, p = d.str("log.format", e.val); p != nil {
			return p
		}
	}
	return nil
}

func parseLevel(s string) (slog.Level, bool) {
	for _, l := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError} {
		if strings.EqualFold(s, l.String()) {
			return l, true
		}
	}
	return 0, false
}

// health overrides the fields of h that the mapping at path sets. A type
// other than the inherited one drops the inherited fields that belong to a
// type (path, status, host, send, expect): a service that switches from the
// global http check to tcp must not carry the global path along. "type"
// comes first in healthKeys, so the fields set next to it survive.
func (d *yamlDoc) health(path string, n *yaml.Node, h *Health) *problem {
	f, p := d.fields(path, n, healthKeys()...)
	if p != nil {
		return p
	}
	for _, key := range healthKeys() {
		e, ok := f[key]
		if !ok {
			continue
		}
		fp := join(path, key)
		switch key {
		case "type":
			var typ string
			if typ, p = d.str(fp, e.val); p == nil && typ != h.Type && !(typ == HealthTCP && h.Type == "") {
				h.Type = typ
				h.Path, h.Status, h.Host, h.Send, h.Expect = "", 0, "", "", ""
			}
		case "interval":
			h.Interval, p = d.duration(fp, e.val)
		case "timeout":
			h.Timeout, p = d.duration(fp, e.val)
		case "rise":
			h.Rise, p = d.integer(fp, e.val)
		case "fall":
			h.Fall, p = d.integer(fp, e.val)
		case "port":
			h.Port, p = d.port(fp, e.val, true)
		case "passive":
			h.Passive, p = d.integer(fp, e.val)
		case "path":
			h.Path, p = d.str(fp, e.val)
		case "status":
			h.Status, p = d.integer(fp, e.val)
		case "host":
			h.Host, p = d.str(fp, e.val)
		case "send":
			h.Send, p = d.str(fp, e.val)
		case "expect":
			h.Expect, p = d.str(fp, e.val)
		}
		if p != nil {
			return p
		}
	}
	return nil
}

func (d *yamlDoc) services(n *yaml.Node, s *Spec) *problem {
	items, p := d.list("services", n)
	if p != nil {
		return p
	}
	for i, it := range items {
		svc, p := d.service(index("services", i), it, s.Health)
		if p != nil {
			return p
		}
		s.Services = append(s.Services, svc)
	}
	return nil
}

func (d *yamlDoc) service(path string, n *yaml.Node, health Health) (Service, *problem) {
	svc := Service{Health: health}
	f, p := d.fields(path, n, serviceKeys()...)
	if p != nil {
		return svc, p
	}
	if e, ok := f["name"]; ok {
		if svc.Name, p = d.str(join(path, "name"), e.val); p != nil {
			return svc, p
		}
	}
	if e, ok := f["vip"]; ok {
		vp := join(path, "vip")
		text, p := d.str(vp, e.val)
		if p != nil {
			return svc, p
		}
		a, _, hasPort, msg := parseHostPort(text)
		if msg == "" && hasPort {
			msg = "port not allowed here (use port or ports)"
		}
		if msg != "" {
			return svc, bad(vp, text, msg)
		}
		svc.VIP = a
	}
	port, hasPort := f["port"]
	ports, hasPorts := f["ports"]
	switch {
	case hasPort && hasPorts:
		return svc, &problem{path: join(path, "ports"), line: ports.key.Line, err: errors.New("use either port or ports, not both")}
	case hasPort:
		// `port: 80` is stored as ports[0]; messages keep the file's spelling.
		display := join(path, "port")
		pp := join(path, "ports[0]")
		d.locs[join(path, "ports")] = yamlLoc{line: port.key.Line, display: display}
		d.locs[pp] = yamlLoc{display: display}
		v, p := d.port(pp, port.val, false)
		if p != nil {
			return svc, p
		}
		svc.Ports = []uint16{v}
	case hasPorts:
		lp := join(path, "ports")
		items, p := d.list(lp, ports.val)
		if p != nil {
			return svc, p
		}
		for j, it := range items {
			v, p := d.port(index(lp, j), it, false)
			if p != nil {
				return svc, p
			}
			svc.Ports = append(svc.Ports, v)
		}
	}
	if e, ok := f["mode"]; ok {
		mp := join(path, "mode")
		text, p := d.str(mp, e.val)
		if p != nil {
			return svc, p
		}
		m, ok := lookupMode(text)
		if !ok {
			return svc, bad(mp, text, msgUnknownMode)
		}
		svc.Mode = m
	}
	if e, ok := f["scheduler"]; ok {
		if svc.Scheduler, p = d.str(join(path, "scheduler"), e.val); p != nil {
			return svc, p
		}
	}
	if e, ok := f["maint_flows"]; ok {
		if svc.MaintFlows, p = d.str(join(path, "maint_flows"), e.val); p != nil {
			return svc, p
		}
	}
	if e, ok := f["health"]; ok {
		if p := d.health(join(path, "health"), e.val, &svc.Health); p != nil {
			return svc, p
		}
	}
	if e, ok := f["backends"]; ok {
		lp := join(path, "backends")
		items, p := d.list(lp, e.val)
		if p != nil {
			return svc, p
		}
		for j, it := range items {
			b, p := d.backend(index(lp, j), it)
			if p != nil {
				return svc, p
			}
			svc.Backends = append(svc.Backends, b)
		}
	}
	return svc, nil
}

// backend reads "IP[:PORT]" or {address: IP[:PORT], weight: N, state: S}.
// Either way the address is recorded at path itself, where validate reports
// it. The short form is a ready backend of weight 1.
func (d *yamlDoc) backend(path string, n *yaml.Node) (Backend, *problem) {
	b := Backend{Weight: 1}
	n, p := d.deref(path, n)
	if p != nil {
		return b, p
	}
	addr := n
	if n.Kind == yaml.MappingNode {
		f, p := d.fields(path, n, backendKeys()...)
		if p != nil {
			return b, p
		}
		e, ok := f["address"]
		if !ok {
			return b, &problem{path: path, line: n.Line, err: errors.New("address required")}
		}
		addr = e.val
		if e, ok := f["weight"]; ok {
			if b.Weight, p = d.integer(join(path, "weight"), e.val); p != nil {
				return b, p
			}
		}
		if e, ok := f["state"]; ok {
			if b.State, p = d.str(join(path, "state"), e.val); p != nil {
				return b, p
			}
		}
	}
	text, p := d.str(path, addr)
	if p != nil {
		return b, p
	}
	a, port, _, msg := parseHostPort(text)
	if msg != "" {
		return b, bad(path, text, msg)
	}
	b.Addr = netip.AddrPortFrom(a, port)
	return b, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// oneLine keeps a message on one line and free of control characters.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func cleanName(name string) string {
	if name == "" {
		return "input"
	}
	return oneLine(name)
}
