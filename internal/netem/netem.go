// Package netem is a userspace TCP proxy that makes a link weak on
// purpose, for tests (the kernel's netem is not available everywhere): it
// adds latency, cuts the link (open connections reset, new ones refused)
// or blackholes it (connections stay open, bytes vanish, as behind a dead
// NAT mapping).
//
//	client ──> Proxy (127.0.0.1:port) ──latency / cut / blackhole──> target
package netem

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Mode is the state of the link.
type Mode int

// Modes.
const (
	// Up forwards bytes (after the latency).
	Up Mode = iota
	// Cut resets every connection and refuses new ones.
	Cut
	// Blackhole accepts connections and drops every byte both ways.
	Blackhole
)

// Proxy forwards TCP connections to a target. Safe for concurrent use.
type Proxy struct {
	target string
	l      net.Listener

	mu      sync.Mutex
	mode    Mode
	latency time.Duration
	links   map[*link]struct{}
	closed  bool
	wg      sync.WaitGroup
}

type link struct{ client, server net.Conn }

func (l *link) close() {
	if tc, ok := l.client.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // a reset, like a router that lost the route
	}
	_ = l.client.Close()
	if l.server != nil {
		_ = l.server.Close()
	}
}

// New listens on a free port of 127.0.0.1 and forwards to target.
func New(target string) (*Proxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{target: target, l: l, links: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address clients connect to.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

// SetLatency delays every chunk of bytes by d in each direction.
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	p.latency = d
	p.mu.Unlock()
}

// SetMode changes the link. Cut resets the open connections at once.
func (p *Proxy) SetMode(m Mode) {
	p.mu.Lock()
	p.mode = m
	var drop []*link
	if m == Cut {
		for l := range p.links {
			drop = append(drop, l)
			delete(p.links, l)
		}
	}
	p.mu.Unlock()
	for _, l := range drop {
		l.close()
	}
}

// Connections returns how many connections are open through the proxy.
func (p *Proxy) Connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

func (p *Proxy) state() (Mode, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode, p.latency
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		mode, _ := p.state()
		lk := &link{client: c}
		switch mode {
		case Cut:
			lk.close()
			continue
		case Up:
			s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
			if err != nil {
				lk.close()
				continue
			}
			lk.server = s
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			lk.close()
			return
		}
		p.links[lk] = struct{}{}
		p.mu.Unlock()
		if lk.server == nil { // blackholed: swallow what the client sends
			p.wg.Add(1)
			go p.pipe(lk, lk.client, nil)
			continue
		}
		p.wg.Add(2)
		go p.pipe(lk, lk.client, lk.server)
		go p.pipe(lk, lk.server, lk.client)
	}
}

// pipe copies src to dst through a delay line, dropping bytes while the
// link is blackholed. A connection accepted while blackholed has no
// server side (dst nil): its bytes are read and dropped until it closes.
func (p *Proxy) pipe(lk *link, src, dst net.Conn) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.links, lk)
		p.mu.Unlock()
		lk.close()
	}()
	type chunk struct {
		b  []byte
		at time.Time
	}
	q := make(chan chunk, 1024)
	done := make(chan struct{})
	go func() { // the delay line
		defer close(done)
		for c := range q {
			if d := time.Until(c.at); d > 0 {
				time.Sleep(d)
			}
			if dst == nil {
				continue
			}
			if _, err := dst.Write(c.b); err != nil {
				lk.close()
				for range q {
				}
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			mode, lat := p.state()
			if mode == Up {
				q <- chunk{b: append([]byte(nil), buf[:n]...), at: time.Now().Add(lat)}
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				lk.close()
			}
			break
		}
	}
	close(q)
	<-done
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	links := p.links
	p.links = map[*link]struct{}{}
	p.mu.Unlock()
	err := p.l.Close()
	for l := range links {
		l.close()
	}
	p.wg.Wait()
	return err
}
