package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/l4raw/l4raw/pkg/sched"
)

// Limits, each with its reason.
const (
	// MaxMaxConns caps the connection table at 2^26 entries: even at a compact
	// 64 bytes per entry that is 4 GiB, beyond the machines this runs on, so a
	// larger value is a typo.
	MaxMaxConns = 1 << 26
	// MaxWorkers caps the worker count far above the CPU count of any host we
	// target; a larger value is a typo.
	MaxWorkers = 1024
	// MinNATPort keeps NAT ports out of the privileged range (< 1024), where
	// the host's own services listen.
	MinNATPort = 1024
	// MaxWeight is the largest backend weight, the range ipvsadm(8) accepts.
	MaxWeight = 65535
	// ifNameSize is IFNAMSIZ from <linux/if.h>: names hold at most 15 bytes.
	ifNameSize = 16
	// MaxHealthText caps each text of a check (send, expect, path, host): a
	// check exchanges a line or two, so a longer value is a mistake (a file
	// pasted in), and a request this size still fits one segment at the
	// usual 1500-byte MTU.
	MaxHealthText = 1024
	// Status codes are three digits, 1xx to 5xx (RFC 9110 §15).
	minHTTPStatus, maxHTTPStatus = 100, 599
	// defaultHTTPStatus and defaultHTTPPath make the plain `type: http`
	// check HAProxy's `option httpchk` default: GET / expecting 200 (HAProxy
	// takes any 2xx or 3xx; one code is simpler to reason about).
	defaultHTTPStatus = 200
	defaultHTTPPath   = "/"
	// MaxPassive caps Health.Passive: 10000 failed connections in one
	// second before a check counts as failed is already a backend refusing
	// a heavy load; a larger value is a typo, or a wish to turn passive
	// checks off, which 0 does.
	MaxPassive = 10000
)

// Messages that more than one place produces.
const (
	msgInvalidAddress = "invalid address"
	msgInvalidPort    = "invalid port"
	msgUnknownMode    = "unknown mode (want fullnat or dnat)"
	msgBadPortRange   = "invalid port range (want LO-HI, a single port or auto)"
	msgPositive       = "must be greater than 0"
	msgAtLeastOne     = "must be at least 1"
	msgAPIAddress     = "invalid address (want IP:PORT or off)"
)

// problem is one validation failure before it is placed in its source (a
// file line, a flag, or a bare field path).
type problem struct {
	path     string // canonical field path, e.g. "services[0].backends[1]"
	value    string // offending value
	hasValue bool   // value is set (it may be "")
	// computed marks a value built from several fields (VIP:port), which
	// must not be replaced by the text of the field at path.
	computed bool
	err      error  // what is wrong; may wrap ErrNotSupported
	other    string // canonical path of the conflicting field, if any
	after    string // text after the reference to other
	line     int    // source line when the decoder knows it better than path does
}

// bad reports a wrong value; missing reports a problem with no value to
// quote.
func bad(path, value, msg string) *problem {
	return &problem{hasValue: true, path: path, value: value, err: errors.New(msg)}
}

func missing(path, msg string) *problem {
	return &problem{path: path, err: errors.New(msg)}
}

// locator places a problem in its source.
type locator interface {
	// where is the text before the message: position, field and value.
	where(p *problem) string
	// ref names another field in a message.
	ref(path string) string
}

// errorFor renders p as the package's one-line error.
func errorFor(l locator, p *problem) error {
	err := p.err
	if p.other != "" {
		err = fmt.Errorf("%w %s%s", p.err, l.ref(p.other), p.after)
	}
	return fmt.Errorf("config: %s: %w", l.where(p), err)
}

// pathLocator renders bare field paths, for a Spec built in code.
type pathLocator struct{}

func (pathLocator) where(p *problem) string {
	if !p.hasValue {
		return p.path
	}
	return p.path + ": " + quote(p.value)
}

func (pathLocator) ref(path string) string { return path }

// maxQuoted bounds how much of an offending value a message repeats.
const maxQuoted = 80

// quote quotes s for a message: escaped, so a message stays on one line,
// and cut to maxQuoted runes.
func quote(s string) string {
	if r := []rune(s); len(r) > maxQuoted {
		s = string(r[:maxQuoted]) + "..."
	}
	return strconv.Quote(s)
}

// Validate checks every field of s and fills the defaults that the zero value
// stands for: service names ("VIP:PORT"), scheduler "rr", maint flows
// "keep", backend state "ready", health type "tcp" (for http: path "/" and
// status 200), log format "text", API address DefaultAPI, and a zero
// service Health (taken from s.Health, itself DefaultHealth() when zero).
// Other fields have no implicit default: start from Default(). The error
// names the field and the value:
//
//	config: services[0].vip: "2001:db8::1": IPv6 not supported yet
func (s *Spec) Validate() error {
	if p := s.validate(); p != nil {
		return errorFor(pathLocator{}, p)
	}
	return nil
}

func (s *Spec) validate() *problem {
	if p := s.validateHost(); p != nil {
		return p
	}
	if (s.Health == Health{}) {
		s.Health = DefaultHealth()
	}
	if p := validateHealth("health", &s.Health); p != nil {
		return p
	}
	if len(s.Services) == 0 {
		return missing("services", "at least one service required")
	}
	names := make(map[string]int, len(s.Services))
	listeners := make(map[netip.AddrPort]string, len(s.Services))
	for i := range s.Services {
		if p := s.validateService(i, names, listeners); p != nil {
			return p
		}
	}
	return s.validateNATOverlap()
}

// validateHost checks the fields that are not about services.
func (s *Spec) validateHost() *problem {
	seenIf := make(map[string]int, len(s.Interfaces))
	for i, name := range s.Interfaces {
		path := fmt.Sprintf("interfaces[%d]", i)
		if !validIfName(name) {
			return bad(path, name, "invalid interface name")
		}
		if j, dup := seenIf[name]; dup {
			return &problem{hasValue: true, path: path, value: name, err: errors.New("duplicate of"), other: fmt.Sprintf("interfaces[%d]", j)}
		}
		seenIf[name] = i
	}
	seenSNAT := make(map[netip.Addr]int, len(s.SNAT))
	for i, a := range s.SNAT {
		path := fmt.Sprintf("snat[%d]", i)
		if !a.IsValid() {
			return missing(path, msgInvalidAddress)
		}
		if err := checkUnicast4(a); err != nil {
			return &problem{hasValue: true, path: path, value: a.String(), err: err}
		}
		if j, dup := seenSNAT[a]; dup {
			return &problem{hasValue: true, path: path, value: a.String(), err: errors.New("duplicate of"), other: fmt.Sprintf("snat[%d]", j)}
		}
		seenSNAT[a] = i
	}
	if r := s.NATPorts; !r.IsZero() {
		switch {
		case r.Lo > r.Hi:
			return bad("nat_ports", r.String(), "low port above high port")
		case r.Lo < MinNATPort:
			return bad("nat_ports", r.String(), fmt.Sprintf("must start at %d or above", MinNATPort))
		}
	}
	if s.MaxConns < 1 || s.MaxConns > MaxMaxConns {
		return bad("max_conns", strconv.Itoa(s.MaxConns), fmt.Sprintf("must be 1..%d", MaxMaxConns))
	}
	if s.Workers < 0 || s.Workers > MaxWorkers {
		return bad("workers", strconv.Itoa(s.Workers), fmt.Sprintf("must be 0..%d (0 = one per CPU)", MaxWorkers))
	}
	timeouts := []struct {
		path string
		d    time.Duration
	}{
		{"timeouts.syn", s.Timeouts.SYN},
		{"timeouts.established", s.Timeouts.Established},
		{"timeouts.fin", s.Timeouts.FIN},
		{"timeouts.time_wait", s.Timeouts.TimeWait},
		{"timeouts.close", s.Timeouts.Close},
	}
	for _, t := range timeouts {
		if t.d <= 0 {
			return bad(t.path, t.d.String(), msgPositive)
		}
	}
	switch s.LogLevel {
	case slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError:
	default:
		return bad("log.level", s.LogLevel.String(), "unknown log level (want debug, info, warn or error)")
	}
	if s.LogFormat == "" {
		s.LogFormat = "text"
	}
	if s.LogFormat != "text" && s.LogFormat != "json" {
		return bad("log.format", s.LogFormat, "unknown log format (want text or json)")
	}
	switch s.VIPARP {
	case "":
		s.VIPARP = VIPARPAuto
	case VIPARPAuto, VIPARPOn, VIPARPOff:
	default:
		return bad("vip_arp", s.VIPARP, "want auto, on or off")
	}
	if s.API == "" {
		s.API = DefaultAPI
	}
	if msg := checkAPI(s.API); msg != "" {
		return bad("api", s.API, msg)
	}
	return nil
}

// checkAPI accepts APIOff or IP:PORT with an IP literal, so the address is
// the one the socket binds to and no name lookup decides it. Loopback and
// the unspecified addresses of either family are what a listener uses;
// multicast and broadcast addresses cannot be bound by a TCP listener.
func checkAPI(s string) string {
	if s == APIOff {
		return ""
	}
	a, _, hasPort, msg := parseHostPort(s)
	switch {
	case msg == msgInvalidAddress:
		return msgAPIAddress
	case msg != "":
		return msg
	case !hasPort:
		return "port required (IP:PORT or off)"
	case a.IsMulticast():
		return "multicast address not allowed"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "broadcast address not allowed"
	}
	return ""
}

// validateHealth checks h, found at path, and fills its type and the
// defaults of its type.
func validateHealth(path string, h *Health) *problem {
	switch h.Type {
	case "":
		h.Type = HealthTCP
	case HealthTCP, HealthHTTP, HealthSendExpect:
	default:
		return bad(path+".type", h.Type, "unknown health check type (want tcp, http or send-expect)")
	}
	switch {
	case h.Interval <= 0:
		return bad(path+".interval", h.Interval.String(), msgPositive)
	case h.Timeout <= 0:
		return bad(path+".timeout", h.Timeout.String(), msgPositive)
	case h.Interval <= h.Timeout:
		// One check per backend at a time: a check must end before the next
		// one is due.
		return missing(path, fmt.Sprintf("interval %v must be greater than timeout %v", h.Interval, h.Timeout))
	case h.Rise < 1:
		return bad(path+".rise", strconv.Itoa(h.Rise), msgAtLeastOne)
	case h.Fall < 1:
		return bad(path+".fall", strconv.Itoa(h.Fall), msgAtLeastOne)
	case h.Passive < 0 || h.Passive > MaxPassive:
		return bad(path+".passive", strconv.Itoa(h.Passive), fmt.Sprintf("must be 0..%d (0 = off)", MaxPassive))
	}
	// A field of another type is a mistake (a misspelt type, a field left
	// from an edit); ignoring it would check something else than meant.
	for _, f := range []struct {
		key, owner, value string
		set               bool
	}{
		{"path", HealthHTTP, h.Path, h.Path != ""},
		{"status", HealthHTTP, strconv.Itoa(h.Status), h.Status != 0},
		{"host", HealthHTTP, h.Host, h.Host != ""},
		{"send", HealthSendExpect, h.Send, h.Send != ""},
		{"expect", HealthSendExpect, h.Expect, h.Expect != ""},
	} {
		if f.set && f.owner != h.Type {
			return bad(path+"."+f.key, f.value, fmt.Sprintf("not used by type %s (only by %s)", h.Type, f.owner))
		}
	}
	tooLong := fmt.Sprintf("too long (at most %d bytes)", MaxHealthText)
	switch h.Type {
	case HealthHTTP:
		if h.Path == "" {
			h.Path = defaultHTTPPath
		}
		if h.Status == 0 {
			h.Status = defaultHTTPStatus
		}
		switch {
		case len(h.Path) > MaxHealthText:
			return bad(path+".path", h.Path, tooLong)
		case h.Path[0] != '/':
			return bad(path+".path", h.Path, `must start with "/"`)
		case !visibleASCII(h.Path):
			return bad(path+".path", h.Path, "must be visible ASCII without spaces (percent-encode the rest)")
		case h.Status < minHTTPStatus || h.Status > maxHTTPStatus:
			return bad(path+".status", strconv.Itoa(h.Status), fmt.Sprintf("must be %d..%d", minHTTPStatus, maxHTTPStatus))
		case len(h.Host) > MaxHealthText:
			return bad(path+".host", h.Host, tooLong)
		case !visibleASCII(h.Host):
			return bad(path+".host", h.Host, "must be a host name or address[:port], visible ASCII without spaces")
		}
	case HealthSendExpect:
		switch {
		case len(h.Send) > MaxHealthText:
			return bad(path+".send", h.Send, tooLong)
		case h.Expect == "":
			return missing(path+".expect", "required by type send-expect (the start of the reply)")
		case len(h.Expect) > MaxHealthText:
			return bad(path+".expect", h.Expect, tooLong)
		}
	}
	return nil
}

// visibleASCII reports whether s holds only printable ASCII other than
// space: what a request target or a Host header may carry as is.
func visibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// validateService checks s.Services[i] and fills its defaults. names maps
// service names to their index, listeners maps VIP:port to the path of the
// port that claimed it.
func (s *Spec) validateService(i int, names map[string]int, listeners map[netip.AddrPort]string) *problem {
	svc := &s.Services[i]
	path := fmt.Sprintf("services[%d]", i)

	if !svc.VIP.IsValid() {
		return missing(path+".vip", "address required")
	}
	if err := checkUnicast4(svc.VIP); err != nil {
		return &problem{hasValue: true, path: path + ".vip", value: svc.VIP.String(), err: err}
	}
	if len(svc.Ports) == 0 {
		return missing(path+".ports", "at least one port required")
	}
	seenPort := make(map[uint16]int, len(svc.Ports))
	for j, port := range svc.Ports {
		ppath := fmt.Sprintf("%s.ports[%d]", path, j)
		if port == 0 {
			return bad(ppath, "0", msgInvalidPort)
		}
		if k, dup := seenPort[port]; dup {
			return &problem{hasValue: true, path: ppath, value: strconv.Itoa(int(port)), err: errors.New("duplicate of"),
				other: fmt.Sprintf("%s.ports[%d]", path, k)}
		}
		seenPort[port] = j
		ap := netip.AddrPortFrom(svc.VIP, port)
		if other, dup := listeners[ap]; dup {
			return &problem{hasValue: true, path: ppath, value: ap.String(), computed: true,
				err: errors.New("already used by"), other: other}
		}
		listeners[ap] = ppath
	}
	if svc.Mode != ModeFullNAT && svc.Mode != ModeDNAT {
		return bad(path+".mode", svc.Mode.String(), msgUnknownMode)
	}
	if svc.Scheduler == "" {
		svc.Scheduler = "rr"
	}
	if !contains(sched.Names(), svc.Scheduler) {
		return bad(path+".scheduler", svc.Scheduler, msgUnknownScheduler())
	}
	switch svc.MaintFlows {
	case "":
		svc.MaintFlows = MaintFlowsKeep
	case MaintFlowsKeep, MaintFlowsReset:
	default:
		return bad(path+".maint_flows", svc.MaintFlows, "unknown maint flows policy (want keep or reset)")
	}
	if svc.Name == "" {
		svc.Name = netip.AddrPortFrom(svc.VIP, svc.Ports[0]).String()
	}
	if !printable(svc.Name) {
		return bad(path+".name", svc.Name, "name must be printable text")
	}
	if k, dup := names[svc.Name]; dup {
		return &problem{hasValue: true, path: path + ".name", value: svc.Name, err: errors.New("already used by"),
			other: fmt.Sprintf("services[%d]", k)}
	}
	names[svc.Name] = i

	if (svc.Health == Health{}) {
		svc.Health = s.Health
	}
	if p := validateHealth(path+".health", &svc.Health); p != nil {
		return p
	}
	return validateBackends(path, svc)
}

func validateBackends(path string, svc *Service) *problem {
	if len(svc.Backends) == 0 {
		return missing(path+".backends", "at least one backend required")
	}
	// A backend without a port is keyed with port 0 in a multi-port
	// service (it serves every port) and with the service port otherwise, so
	// that "a" and "a:80" collide on a service listening on 80.
	var keyPort uint16
	if len(svc.Ports) == 1 {
		keyPort = svc.Ports[0]
	}
	seen := make(map[netip.AddrPort]int, len(svc.Backends))
	for j, b := range svc.Backends {
		bpath := fmt.Sprintf("%s.backends[%d]", path, j)
		a := b.Addr.Addr()
		if !a.IsValid() {
			return missing(bpath, "address required")
		}
		// A loopback backend is a service on the balancer itself, which
		// l4raw reaches through lo.
		if err := checkUnicast4(a); err != nil && !a.IsLoopback() {
			return &problem{hasValue: true, path: bpath, value: backendText(b.Addr), err: err}
		}
		if b.Addr.Port() != 0 && len(svc.Ports) > 1 {
			return bad(bpath, b.Addr.String(),
				"port not allowed: the service has several ports, each goes to the same port on the backend")
		}
		key := b.Target(keyPort)
		if k, dup := seen[key]; dup {
			return &problem{hasValue: true, path: bpath, value: backendText(b.Addr), err: errors.New("duplicate of"),
				other: fmt.Sprintf("%s.backends[%d]", path, k)}
		}
		seen[key] = j
		if a == svc.VIP && (b.Addr.Port() == 0 || containsPort(svc.Ports, b.Addr.Port())) {
			return bad(bpath, backendText(b.Addr), "backend is the service address itself (a forwarding loop)")
		}
		if b.Weight < 0 || b.Weight > MaxWeight {
			return bad(bpath+".weight", strconv.Itoa(b.Weight), fmt.Sprintf("must be 0..%d", MaxWeight))
		}
		switch b.State {
		case "":
			svc.Backends[j].State = StateReady
		case StateReady, StateDrain, StateMaint:
		default:
			return bad(bpath+".state", b.State, "unknown state (want ready, drain or maint)")
		}
	}
	return nil
}

// msgUnknownScheduler lists the schedulers pkg/sched builds, so the message
// never disagrees with what the engine accepts.
func msgUnknownScheduler() string {
	return "unknown scheduler (want " + orList(sched.Names()) + ")"
}

// orList writes "a, b or c".
func orList(items []string) string {
	switch len(items) {
	case 0:
		return ""
	case 1:
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// validateNATOverlap rejects a NAT port range that would capture a service
// port: when a VIP is also an SNAT address, replies to NAT ports and new
// connections to the service would be the same 4-tuple space.
func (s *Spec) validateNATOverlap() *problem {
	if s.NATPorts.IsZero() || len(s.SNAT) == 0 {
		return nil
	}
	for i, svc := range s.Services {
		if !containsAddr(s.SNAT, svc.VIP) {
			continue
		}
		for j, port := range svc.Ports {
			if s.NATPorts.Contains(port) {
				return &problem{hasValue: true, path: "nat_ports", value: s.NATPorts.String(), err: errors.New("includes"),
					other: fmt.Sprintf("services[%d].ports[%d]", i, j), after: ", a service port on an snat address"}
			}
		}
	}
	return nil
}

// checkUnicast4 accepts the addresses a VIP, backend or SNAT address can be:
// IPv4 unicast reachable over a LAN.
func checkUnicast4(a netip.Addr) error {
	switch {
	case !a.IsValid():
		return errors.New(msgInvalidAddress)
	case a.Is4In6():
		return errors.New("IPv4-mapped IPv6 address (write it as IPv4)")
	case !a.Is4():
		return fmt.Errorf("IPv6 %w", ErrNotSupported)
	case a.IsUnspecified():
		return errors.New("unspecified address not allowed")
	case a.IsMulticast():
		return errors.New("multicast address not allowed")
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return errors.New("broadcast address not allowed")
	case a.IsLoopback():
		return errors.New("loopback address not allowed (not reachable through an interface)")
	}
	return nil
}

// validIfName mirrors the kernel's dev_valid_name (net/core/dev.c).
func validIfName(name string) bool {
	if name == "" || len(name) >= ifNameSize || name == "." || name == ".." {
		return false
	}
	for _, r := range name {
		if r == '/' || r == ':' || unicode.IsSpace(r) || r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return s != "" && strings.TrimSpace(s) == s
}

func containsPort(ports []uint16, p uint16) bool {
	for _, q := range ports {
		if q == p {
			return true
		}
	}
	return false
}

func containsAddr(as []netip.Addr, a netip.Addr) bool {
	for _, b := range as {
		if a == b {
			return true
		}
	}
	return false
}

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// backendText writes a backend the way a user writes it: no ":0".
func backendText(ap netip.AddrPort) string {
	if ap.Port() == 0 {
		return addrText(ap.Addr())
	}
	return ap.String()
}

// parsePortNumber parses a decimal port 1..65535.
func parsePortNumber(s string) (uint16, bool) {
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, false
	}
	return uint16(n), true
}

// parseHostPort parses "IP", "IP:PORT", "[IPv6]" or "[IPv6]:PORT". The
// returned message is msgInvalidAddress or msgInvalidPort. IPv4-mapped IPv6
// addresses become IPv4. Whether the family is supported is Validate's call.
func parseHostPort(s string) (a netip.Addr, port uint16, hasPort bool, msg string) {
	host, portText := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}, 0, false, msgInvalidAddress
		}
		host, portText = s[1:end], s[end+1:]
		if portText != "" {
			if portText[0] != ':' {
				return netip.Addr{}, 0, false, msgInvalidAddress
			}
			portText, hasPort = portText[1:], true
		}
	case strings.Count(s, ":") == 1:
		host, portText, hasPort = strings.Cut(s, ":")
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, 0, false, msgInvalidAddress
	}
	if hasPort {
		p, ok := parsePortNumber(portText)
		if !ok {
			return netip.Addr{}, 0, false, msgInvalidPort
		}
		port = p
	}
	return a.Unmap(), port, hasPort, ""
}
