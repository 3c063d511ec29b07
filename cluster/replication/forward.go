package replication

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Forward protocol: members send proposals (and membership changes) to the
// leader over an ALPN "legiond-fwd/1" connection of the mutual-TLS port.
// One request at a time per connection; the client pools connections.
//
//	frame    length u32 | payload (≤ maxFrame)
//	request  op u8 | body
//	response code u8 | body
//
//	op 1 apply   body: a command (see DecodeCommand) → ok body: responses
//	op 2 voter   body: id len u8 | id | address len u8 | address
//	op 3 remove  body: id len u8 | id
//	op 4 status  body: empty → ok body: memberStatus
//	op 5 app     body: the caller's request → ok body: Config.Serve's answer
//	             (error: 4 with Serve's error text)
//
//	code 0 ok, 1 not leader (body: leader id len u8 | id | address len u8 |
//	address, possibly empty), 2 outcome unknown, 3 invalid, 4 error,
//	5 shut down (bodies 2–5: a message)
const (
	opApply  = 1
	opVoter  = 2
	opRemove = 3
	opStatus = 4
	opApp    = 5

	codeOK        = 0
	codeNotLeader = 1
	codeUnknown   = 2
	codeInvalid   = 3
	codeError     = 4
	codeShutdown  = 5

	fwdIdleTimeout    = 2 * time.Minute
	fwdPoolIdle       = 30 * time.Second
	fwdMaxIdlePerPeer = 8
	maxForwardConns   = 256
)

func writeFrame(w *bufio.Writer, head byte, body []byte) error {
	var h [5]byte
	binary.BigEndian.PutUint32(h[:4], uint32(1+len(body)))
	h[4] = head
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	if _, err := w.Write(body); err != nil {
		return err
	}
	return w.Flush()
}

func readFrame(r *bufio.Reader, maxFrame int) (head byte, body []byte, err error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[:])
	if n == 0 || uint64(n) > uint64(maxFrame) {
		return 0, nil, fmt.Errorf("frame of %d bytes: %w", n, ErrInvalid)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, err
	}
	return buf[0], buf[1:], nil
}

func appendShort(dst []byte, s string) []byte {
	if len(s) > 255 {
		s = s[:255]
	}
	dst = append(dst, byte(len(s)))
	return append(dst, s...)
}

func readShort(r *reader) string { return string(r.bytes(int(r.byte()))) }

// fwdConn is a pooled client connection.
type fwdConn struct {
	c    *tls.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	used time.Time
}

// fwdClient calls peers' forward servers.
type fwdClient struct {
	tls         *tls.Config
	dialTimeout time.Duration
	maxFrame    int
	faults      *Faults

	mu     sync.Mutex
	idle   map[string][]*fwdConn
	closed bool
}

func newFwdClient(clientTLS *tls.Config, dialTimeout time.Duration, maxFrame int, faults *Faults) *fwdClient {
	return &fwdClient{tls: clientTLS, dialTimeout: dialTimeout, maxFrame: maxFrame, faults: faults, idle: make(map[string][]*fwdConn)}
}

// errNotSent marks a call that failed before the peer could act on it
// (dial, handshake, or the peer refused our certificate).
var errNotSent = errors.New("request not delivered")

// call sends one request and waits for its response. An error wrapping
// errNotSent means the peer did not act on the request.
func (c *fwdClient) call(ctx context.Context, addr string, op byte, body []byte) (code byte, resp []byte, err error) {
	fc, err := c.get(ctx, addr)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %w", errNotSent, err)
	}
	if d, ok := ctx.Deadline(); ok {
		_ = fc.c.SetDeadline(d)
	} else {
		_ = fc.c.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { _ = fc.c.SetDeadline(time.Now()) })
	defer stop()
	if err := writeFrame(fc.w, op, body); err != nil {
		_ = fc.c.Close()
		if isTLSRefusal(err) {
			return 0, nil, fmt.Errorf("%w: %w: %w", errNotSent, ErrTLS, err)
		}
		return 0, nil, fmt.Errorf("forward to %s: %w", addr, err)
	}
	code, resp, err = readFrame(fc.r, c.maxFrame)
	if err != nil {
		_ = fc.c.Close()
		if isTLSRefusal(err) {
			return 0, nil, fmt.Errorf("%w: %w: %w", errNotSent, ErrTLS, err)
		}
		return 0, nil, fmt.Errorf("forward to %s: %w", addr, err)
	}
	c.put(addr, fc)
	return code, resp, nil
}

func (c *fwdClient) get(ctx context.Context, addr string) (*fwdConn, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrShutdown
	}
	for l := c.idle[addr]; len(l) > 0; l = c.idle[addr] {
		fc := l[len(l)-1]
		c.idle[addr] = l[:len(l)-1]
		if time.Since(fc.used) < fwdPoolIdle {
			c.mu.Unlock()
			return fc, nil
		}
		_ = fc.c.Close()
	}
	c.mu.Unlock()
	dctx, cancel := context.WithTimeout(ctx, c.dialTimeout)
	defer cancel()
	tc, err := dialTLS(dctx, addr, c.tls, alpnForward, c.faults)
	if err != nil {
		return nil, err
	}
	return &fwdConn{c: tc, r: bufio.NewReaderSize(tc, 64<<10), w: bufio.NewWriterSize(tc, 64<<10)}, nil
}

func (c *fwdClient) put(addr string, fc *fwdConn) {
	fc.used = time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || len(c.idle[addr]) >= fwdMaxIdlePerPeer {
		_ = fc.c.Close()
		return
	}
	c.idle[addr] = append(c.idle[addr], fc)
}

func (c *fwdClient) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for _, l := range c.idle {
		for _, fc := range l {
			_ = fc.c.Close()
		}
	}
	clear(c.idle)
}

// fwdServer serves forward connections; handle answers one request.
type fwdServer struct {
	handle   func(op byte, body []byte) (code byte, resp []byte)
	maxFrame int

	mu     sync.Mutex
	conns  map[*tls.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func newFwdServer(maxFrame int, handle func(op byte, body []byte) (byte, []byte)) *fwdServer {
	return &fwdServer{handle: handle, maxFrame: maxFrame, conns: make(map[*tls.Conn]struct{})}
}

// serve runs on the mux's handshake goroutine for the connection's life.
func (s *fwdServer) serve(tc *tls.Conn) {
	s.mu.Lock()
	if s.closed || len(s.conns) >= maxForwardConns {
		s.mu.Unlock()
		_ = tc.Close()
		return
	}
	s.conns[tc] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, tc)
		s.mu.Unlock()
		_ = tc.Close()
		s.wg.Done()
	}()
	r := bufio.NewReaderSize(tc, 64<<10)
	w := bufio.NewWriterSize(tc, 64<<10)
	for {
		_ = tc.SetReadDeadline(time.Now().Add(fwdIdleTimeout))
		op, body, err := readFrame(r, s.maxFrame)
		if err != nil {
			return
		}
		_ = tc.SetReadDeadline(time.Time{})
		code, resp := s.handle(op, body)
		_ = tc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if err := writeFrame(w, code, resp); err != nil {
			return
		}
	}
}

// closeConns refuses new connections and closes the open ones; handlers
// in progress finish (their responses fail to write).
func (s *fwdServer) closeConns() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
}

// wait waits for every connection's goroutine to return.
func (s *fwdServer) wait() { s.wg.Wait() }

func (s *fwdServer) close() {
	s.closeConns()
	s.wait()
}
