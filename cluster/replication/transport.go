package replication

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// One TLS 1.3 port carries both Raft's RPCs and forwarded proposals; ALPN
// tells them apart, so a connection's purpose is fixed by the handshake and
// no byte of either protocol is read before the peer is authenticated.
const (
	alpnRaft    = "legiond-raft/1"
	alpnForward = "legiond-fwd/1"

	maxPendingHandshakes = 64
	raftAcceptBacklog    = 64
)

// mux accepts TCP connections, runs the mutual-TLS handshake in its own
// goroutine per connection (bounded), and hands authenticated connections to
// raft (through Accept) or to the forward server by ALPN.
type mux struct {
	ln               net.Listener
	advertise        string
	serverTLS        *tls.Config
	handshakeTimeout time.Duration
	log              *slog.Logger
	forward          func(*tls.Conn) // serves one forward connection
	faults           *Faults

	raftConns chan net.Conn
	pending   chan struct{} // handshake slots
	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	accepted, refused atomic.Uint64
}

func newMux(ln net.Listener, advertise string, serverTLS *tls.Config, handshakeTimeout time.Duration, log *slog.Logger, forward func(*tls.Conn), faults *Faults) *mux {
	cfg := serverTLS.Clone()
	cfg.MinVersion = tls.VersionTLS13
	cfg.NextProtos = []string{alpnRaft, alpnForward}
	return &mux{
		ln:               ln,
		advertise:        advertise,
		serverTLS:        cfg,
		handshakeTimeout: handshakeTimeout,
		log:              log,
		forward:          forward,
		faults:           faults,
		raftConns:        make(chan net.Conn, raftAcceptBacklog),
		pending:          make(chan struct{}, maxPendingHandshakes),
		closing:          make(chan struct{}),
	}
}

func (m *mux) start() {
	m.wg.Add(1)
	go m.acceptLoop()
}

func (m *mux) acceptLoop() {
	defer m.wg.Done()
	var delay time.Duration
	for {
		raw, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.closing:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(delay):
			case <-m.closing:
				return
			}
			continue
		}
		delay = 0
		if raw, err = m.faults.wrap(raw); err != nil {
			continue
		}
		select {
		case m.pending <- struct{}{}:
		default: // too many handshakes in progress: shed
			m.refused.Add(1)
			_ = raw.Close()
			continue
		}
		m.wg.Add(1)
		go func() {
			tc := m.handshake(raw)
			m.wg.Done()
			if tc != nil {
				// The forward server tracks its connections itself: close
				// does not wait for them (raft's shutdown closes the mux
				// while forwarded requests may still be answering).
				m.forward(tc)
			}
		}()
	}
}

// handshake authenticates raw and routes it; it returns a forward
// connection for the caller to serve.
func (m *mux) handshake(raw net.Conn) *tls.Conn {
	tc := tls.Server(raw, m.serverTLS)
	ctx, cancel := context.WithTimeout(context.Background(), m.handshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	<-m.pending
	if err != nil {
		m.refused.Add(1)
		m.log.Debug("refused peer connection", "remote", raw.RemoteAddr().String(), "err", err)
		_ = raw.Close()
		return nil
	}
	switch tc.ConnectionState().NegotiatedProtocol {
	case alpnRaft:
		m.accepted.Add(1)
		select {
		case m.raftConns <- tc:
		case <-m.closing:
			_ = tc.Close()
		}
	case alpnForward:
		m.accepted.Add(1)
		return tc
	default:
		m.refused.Add(1)
		_ = tc.Close()
	}
	return nil
}

// close stops accepting and waits for handshakes in progress.
func (m *mux) close() error {
	var err error
	m.closeOnce.Do(func() {
		close(m.closing)
		err = m.ln.Close()
		m.wg.Wait()
		for {
			select {
			case c := <-m.raftConns:
				_ = c.Close()
			default:
				return
			}
		}
	})
	return err
}

// streamLayer is the raft.StreamLayer over the mux: Accept yields
// authenticated raft connections, Dial opens one to a peer.
type streamLayer struct {
	m           *mux
	clientTLS   *tls.Config
	dialTimeout time.Duration
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.m.raftConns:
		return c, nil
	case <-s.m.closing:
		return nil, net.ErrClosed
	}
}

// Close is called by the NetworkTransport on shutdown.
func (s *streamLayer) Close() error { return s.m.close() }

// Addr is the advertised address: raft tells peers to dial it.
func (s *streamLayer) Addr() net.Addr { return advAddr(s.m.advertise) }

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 || timeout > s.dialTimeout {
		timeout = s.dialTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return dialTLS(ctx, string(address), s.clientTLS, alpnRaft, s.m.faults)
}

type advAddr string

func (a advAddr) Network() string { return "tcp" }
func (a advAddr) String() string  { return string(a) }

// dialTLS connects to address and completes a TLS 1.3 handshake offering
// only proto. With TLS 1.3 the client finishes its handshake before the
// server has checked the client certificate: a refusal shows as an error on
// the first read (a "remote error" alert, see isTLSRefusal).
func dialTLS(ctx context.Context, address string, base *tls.Config, proto string, faults *Faults) (*tls.Conn, error) {
	cfg := base.Clone()
	cfg.MinVersion = tls.VersionTLS13
	cfg.NextProtos = []string{proto}
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", address, err)
		}
		cfg.ServerName = host
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", address)
	if err == nil {
		raw, err = faults.wrap(raw)
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", address, err)
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("dial %s: %w: %w", address, ErrTLS, err)
	}
	if got := tc.ConnectionState().NegotiatedProtocol; got != proto {
		_ = tc.Close()
		return nil, fmt.Errorf("dial %s: peer negotiated %q, want %q: %w", address, got, proto, ErrTLS)
	}
	return tc, nil
}

// isTLSRefusal reports a TLS alert from the peer (e.g. it rejected our
// certificate): the peer processed nothing we sent.
func isTLSRefusal(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error"
}
