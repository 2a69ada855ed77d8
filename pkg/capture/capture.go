// Package capture writes the frames the data path handles to a pcapng file
// (github.com/gopacket/gopacket/pcapgo), for debugging: every frame as it
// arrived and as it left, each on an interface named after the direction
// and the network interface ("rx eth0", "tx lo"), optionally only frames to
// or from some addresses.
//
// The data path never waits for the file: Capture copies the frame into a
// bounded queue and returns; when the queue is full the frame is counted in
// Dropped and left out. Capturing costs the data path a copy per frame it
// matches and nothing when capture is off.
package capture

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// queueLen bounds the frames waiting for the file: 4096 full GSO frames
// would be 256 MiB, but frames are copied only to their length.
const queueLen = 4096

type record struct {
	rx      bool
	ifindex int
	at      time.Time
	data    []byte
	orig    int
}

// Writer writes captured frames to a pcapng stream.
type Writer struct {
	w       *pcapgo.NgWriter
	log     *slog.Logger
	snap    int
	match   map[[4]byte]bool
	names   map[int]string
	ids     map[[2]int]int // (rx?1:0, ifindex) -> pcapng interface id
	q       chan record
	done    chan struct{}
	closing sync.Once

	Written, Dropped atomic.Uint64
}

// New returns a Writer on w. ifnames names the interfaces by index; match,
// if not empty, keeps only IPv4 frames whose source or destination is one
// of its addresses; snap bounds the bytes kept of each frame (0: all).
func New(w io.Writer, ifnames map[int]string, match []netip.Addr, snap int, log *slog.Logger) (*Writer, error) {
	ng, err := pcapgo.NewNgWriterInterface(w, pcapgo.NgInterface{Name: "l4raw", LinkType: layers.LinkTypeEthernet}, pcapgo.NgWriterOptions{
		SectionInfo: pcapgo.NgSectionInfo{Application: "l4raw"},
	})
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	c := &Writer{w: ng, log: log, snap: snap, names: ifnames, ids: map[[2]int]int{}, q: make(chan record, queueLen), done: make(chan struct{})}
	if len(match) > 0 {
		c.match = map[[4]byte]bool{}
		for _, a := range match {
			if a.Is4() {
				c.match[a.As4()] = true
			}
		}
	}
	go c.run()
	return c, nil
}

// Match reports whether frame is to or from one of the addresses (every
// frame matches when there are none).
func (c *Writer) Match(frame []byte) bool { return c.match == nil || c.matches(frame) }

// Capture queues a copy of frame (Ethernet first, no virtio-net header)
// that arrived (rx) or leaves on interface ifindex. It never blocks.
func (c *Writer) Capture(rx bool, ifindex int, frame []byte) {
	n := len(frame)
	if c.snap > 0 && n > c.snap {
		n = c.snap
	}
	r := record{rx: rx, ifindex: ifindex, at: time.Now(), data: append([]byte(nil), frame[:n]...), orig: len(frame)}
	select {
	case c.q <- r:
	default:
		c.Dropped.Add(1)
	}
}

func (c *Writer) matches(f []byte) bool {
	if len(f) < 34 || binary.BigEndian.Uint16(f[12:14]) != 0x0800 {
		return false
	}
	return c.match[[4]byte(f[26:30])] || c.match[[4]byte(f[30:34])]
}

func (c *Writer) run() {
	defer close(c.done)
	for r := range c.q {
		id, err := c.iface(r.rx, r.ifindex)
		if err == nil {
			err = c.w.WritePacket(gopacket.CaptureInfo{Timestamp: r.at, CaptureLength: len(r.data), Length: r.orig, InterfaceIndex: id}, r.data)
		}
		if err != nil {
			c.log.Error("capture: write", "err", err)
			continue
		}
		c.Written.Add(1)
		if len(c.q) == 0 {
			c.w.Flush()
		}
	}
	c.w.Flush()
}

func (c *Writer) iface(rx bool, ifindex int) (int, error) {
	dir := 0
	if rx {
		dir = 1
	}
	if id, ok := c.ids[[2]int{dir, ifindex}]; ok {
		return id, nil
	}
	name := c.names[ifindex]
	if name == "" {
		name = fmt.Sprintf("if%d", ifindex)
	}
	label := "tx " + name
	if rx {
		label = "rx " + name
	}
	id, err := c.w.AddInterface(pcapgo.NgInterface{Name: label, LinkType: layers.LinkTypeEthernet})
	if err != nil {
		return 0, err
	}
	c.ids[[2]int{dir, ifindex}] = id
	return id, nil
}

// Close writes what is queued and stops. Capture must not be called after.
func (c *Writer) Close() error {
	c.closing.Do(func() { close(c.q) })
	<-c.done
	return c.w.Flush()
}
