package conntrack

// State is the TCP state of a tracked connection as the balancer sees it
// between client and backend. The names are those of IPVS
// (net/netfilter/ipvs/ip_vs_proto_tcp.c), which operators already know from
// ipvsadm -lc; they appear in the API and in metric labels.
type State uint8

// TCP states.
const (
	None        State = iota
	SynSent           // the client's SYN was forwarded; no answer yet
	SynRecv           // the backend answered with SYN+ACK
	Established       // the client acknowledged the SYN+ACK
	FinWait           // the client sent FIN first
	CloseWait         // the backend sent FIN first
	TimeWait          // both sent FIN: lingering for the last ACK and FIN retransmissions
	Close             // a RST was seen from either side
	numStates
)

var stateNames = [numStates]string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "TIME_WAIT", "CLOSE"}

func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return "INVALID"
}

// Closing reports whether the connection has ended (both FINs or a RST): a new
// SYN on the same client tuple then starts a new connection, as IPVS does.
func (s State) Closing() bool { return s == TimeWait || s == Close }

// Dir is the direction of a segment: Orig from the client, Reply from the
// backend.
type Dir uint8

// Directions.
const (
	Orig  Dir = 0
	Reply Dir = 1
)

// TCP flag bits as on the wire.
const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagACK = 0x10
)

// Next returns the state after a segment with TCP flags fl travelling in
// direction d. It is a pure function, tested on its own; the table applies it
// atomically. It is deliberately permissive (no sequence tracking): the
// endpoints enforce TCP, the balancer only needs to know when a connection
// starts and ends. A RST from either side ends it. Both FINs lead to
// TimeWait, which lingers so the last ACK is still forwarded.
func Next(s State, fl uint8, d Dir) State {
	if fl&flagRST != 0 {
		return Close
	}
	switch s {
	case None:
		if d == Orig && fl&flagSYN != 0 {
			return SynSent
		}
		return None
	case SynSent:
		switch {
		case d == Reply && fl&(flagSYN|flagACK) == flagSYN|flagACK:
			return SynRecv
		case fl&flagFIN != 0:
			return finFrom(d)
		}
	case SynRecv:
		switch {
		case fl&flagFIN != 0:
			return finFrom(d)
		case d == Orig && fl&(flagACK|flagSYN) == flagACK:
			return Established
		}
	case Established:
		if fl&flagFIN != 0 {
			return finFrom(d)
		}
	case FinWait:
		if d == Reply && fl&flagFIN != 0 {
			return TimeWait
		}
	case CloseWait:
		if d == Orig && fl&flagFIN != 0 {
			return TimeWait
		}
	}
	return s
}

func finFrom(d Dir) State {
	if d == Orig {
		return FinWait
	}
	return CloseWait
}
