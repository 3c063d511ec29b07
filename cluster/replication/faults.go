package replication

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
)

// errIsolated is what an isolated member's peer connections fail with.
var errIsolated = errors.New("replication: member isolated by fault injection")

// Faults injects a network partition into a member's cluster port, for
// fault tests and drills: while isolated, every connection to or from a
// peer fails at once and new ones are refused, as if the member's network
// dropped every packet to its peers (its Kafka and PostgreSQL connections
// are untouched: the hard case, a member that still sees its inputs but
// not its cluster). A nil *Faults injects nothing.
type Faults struct {
	isolated atomic.Bool
	mu       sync.Mutex
	conns    map[*faultConn]struct{}
}

// Isolate cuts (true) or heals (false) the member's peer connections.
func (f *Faults) Isolate(on bool) {
	f.isolated.Store(on)
	if !on {
		return
	}
	f.mu.Lock()
	conns := f.conns
	f.conns = nil
	f.mu.Unlock()
	for c := range conns {
		_ = c.Conn.Close()
	}
}

// Isolated reports whether the member is cut off.
func (f *Faults) Isolated() bool { return f != nil && f.isolated.Load() }

// wrap tracks c, or closes it when the member is isolated.
func (f *Faults) wrap(c net.Conn) (net.Conn, error) {
	if f == nil {
		return c, nil
	}
	if f.isolated.Load() {
		_ = c.Close()
		return nil, errIsolated
	}
	fc := &faultConn{Conn: c, f: f}
	f.mu.Lock()
	if f.conns == nil {
		f.conns = map[*faultConn]struct{}{}
	}
	f.conns[fc] = struct{}{}
	f.mu.Unlock()
	return fc, nil
}

type faultConn struct {
	net.Conn
	f *Faults
}

func (c *faultConn) Read(b []byte) (int, error) {
	if c.f.isolated.Load() {
		return 0, errIsolated
	}
	return c.Conn.Read(b)
}

func (c *faultConn) Write(b []byte) (int, error) {
	if c.f.isolated.Load() {
		return 0, errIsolated
	}
	return c.Conn.Write(b)
}

func (c *faultConn) Close() error {
	c.f.mu.Lock()
	delete(c.f.conns, c)
	c.f.mu.Unlock()
	return c.Conn.Close()
}
