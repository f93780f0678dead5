package e2e

import (
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// proxy forwards TCP connections to a target and can freeze them: while
// frozen, bytes are held, as when a server hangs or the network stalls.
type proxy struct {
	ln     net.Listener
	target string
	frozen atomic.Bool
	down   atomic.Bool
	held   atomic.Int64 // bytes that arrived while frozen
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
	// capture keeps what clients send, per connection, for Sent.
	capture bool
	sent    []*bytes.Buffer
	holding []*bytes.Buffer // what clients sent while frozen, per connection, with capture
}

// startProxy listens on a free loopback port; the test's cleanup closes it.
func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	return listenProxy(t, target, false)
}

// startCapturingProxy is startProxy keeping every byte clients send, for Sent.
func startCapturingProxy(t *testing.T, target string) *proxy {
	t.Helper()
	return listenProxy(t, target, true)
}

// listenProxy starts a proxy to target on a free loopback port, keeping what
// clients send if capture; the test's cleanup closes it.
func listenProxy(t *testing.T, target string, capture bool) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{ln: ln, target: target, capture: capture}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

// Sent reports whether any client sent s, as it is, on one connection.
func (p *proxy) Sent(s string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range p.sent {
		if bytes.Contains(b.Bytes(), []byte(s)) {
			return true
		}
	}
	return false
}

// Holds reports whether a client sent s, on one connection, while the
// proxy was frozen (with capture).
func (p *proxy) Holds(s string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range p.holding {
		if bytes.Contains(b.Bytes(), []byte(s)) {
			return true
		}
	}
	return false
}

// Addr is where clients connect.
func (p *proxy) Addr() string { return p.ln.Addr().String() }

// Held is how many bytes arrived while the proxy was frozen.
func (p *proxy) Held() int64 { return p.held.Load() }

// Freeze holds (true) or releases (false) all traffic.
func (p *proxy) Freeze(on bool) { p.frozen.Store(on) }

// Down takes the target away (true), as when a server stops: open
// connections are closed and new ones are closed at once; false brings it
// back.
func (p *proxy) Down(on bool) {
	p.down.Store(on)
	if !on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.down.Load() {
			_ = c.Close()
			continue
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		var sent *bytes.Buffer
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		if p.capture {
			sent = new(bytes.Buffer)
			p.sent = append(p.sent, sent)
		}
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(u, c, sent) })
		p.wg.Go(func() { p.pipe(c, u, nil) })
	}
}

// pipe copies src to dst, holding what arrives while the proxy is frozen,
// and keeps a copy in keep unless it is nil. It goes on reading while
// frozen (what it reads waits, in order, for the thaw), so that Holds sees
// every request a client sends then, not only the first.
func (p *proxy) pipe(dst, src net.Conn, keep *bytes.Buffer) {
	chunks := make(chan []byte, 4096)
	var holding *bytes.Buffer
	if keep != nil {
		holding = new(bytes.Buffer)
		p.mu.Lock()
		p.holding = append(p.holding, holding)
		p.mu.Unlock()
	}
	p.wg.Go(func() { // the reader: never held
		defer close(chunks)
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				chunk := bytes.Clone(buf[:n])
				if p.frozen.Load() {
					p.held.Add(int64(n))
					if holding != nil {
						p.mu.Lock()
						holding.Write(chunk)
						p.mu.Unlock()
					}
				}
				chunks <- chunk
			}
			if err != nil {
				if err != io.EOF {
					_ = src.Close()
				}
				return
			}
		}
	})
	defer dst.Close()
	for chunk := range chunks {
		for p.frozen.Load() {
			time.Sleep(5 * time.Millisecond)
		}
		if keep != nil {
			p.mu.Lock()
			keep.Write(chunk)
			p.mu.Unlock()
		}
		if _, err := dst.Write(chunk); err != nil {
			_ = src.Close() // the reader ends with the connection
			for range chunks {
			}
			return
		}
	}
}

func (p *proxy) close() {
	_ = p.ln.Close()
	p.Freeze(false)
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
