package broker

import (
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/lastmile-dm/lastmile/third_party/mochi"
	"github.com/lastmile-dm/lastmile/third_party/mochi/listeners"
)

// This file closes a race in mochi between the end of one connection and
// the start of the next with the same client ID.
//
// When a connection with an expiring session ends, mochi checks that it was
// not taken over, then unsubscribes its filters from the topic index by
// client ID and deletes the client entry by client ID. A new connection
// with the same ID (the device reconnecting at once, or taking over) can
// start inside that window: the old connection's tail then removes the new
// session's subscriptions or its client entry, and messages for the device
// are silently dropped (measured: about one immediate reconnect in 300).
//
// So every connection's whole life, from CONNECT to the end of mochi's
// handling of it, is tracked per client ID; a new session waits in
// OnSessionEstablished (before it reads any packet) until every connection
// with its ID that was still being handled when it sent CONNECT has
// finished, then repairs what their ends may have removed: its client
// entry and the subscriptions its session holds.

// tailWait bounds how long a new session waits for an old connection's
// end. The tail is a few map operations and the disconnect hooks, so this
// is reached only if a hook hangs; the session then goes ahead unrepaired.
const tailWait = 5 * time.Second

// tails tracks connections that mochi is still handling.
type tails struct {
	mu     sync.Mutex
	byConn map[net.Conn]*tail
	byID   map[string][]*tail // usually one: a slice costs a connection less than a set
}

type tail struct {
	id   string
	done chan struct{}
	// prior are the connections with the same ID that mochi was still
	// handling when this one sent CONNECT: their ends may undo its start.
	prior []chan struct{}
}

func newTails() *tails {
	return &tails{byConn: map[net.Conn]*tail{}, byID: map[string][]*tail{}}
}

// track wraps a listener so that the end of each connection's handling is
// known. Connections are handed to mochi with EstablishConnectionThen, so
// that an idle one can give up its goroutine (parkIdle); mochi's own
// establish function, which waits for the end, is not used.
func (s *Server) track(l listeners.Listener) listeners.Listener {
	return &trackedListener{Listener: l, t: s.tails, m: s.mochi}
}

type trackedListener struct {
	listeners.Listener
	t *tails
	m *mqtt.Server
}

func (l *trackedListener) Serve(listeners.EstablishFn) {
	l.Listener.Serve(func(id string, c net.Conn) error {
		l.m.EstablishConnectionThen(id, c, func(err error) {
			l.t.finished(c)
			if err != nil {
				l.m.Log.Warn("connection ended", "error", err) // what mochi's listener logged
			}
		})
		return nil
	})
}

// started records that cl, which just sent CONNECT, is being handled.
func (t *tails) started(cl *mqtt.Client) {
	if cl.Net.Conn == nil {
		return
	}
	tl := &tail{id: cl.ID, done: make(chan struct{})}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byConn[cl.Net.Conn] = tl
	set := t.byID[cl.ID]
	for _, other := range set {
		tl.prior = append(tl.prior, other.done)
	}
	t.byID[cl.ID] = append(set, tl)
}

// finished records that mochi is done with connection c.
func (t *tails) finished(c net.Conn) {
	t.mu.Lock()
	tl := t.byConn[c]
	delete(t.byConn, c)
	if tl != nil {
		set := slices.DeleteFunc(t.byID[tl.id], func(o *tail) bool { return o == tl })
		if len(set) == 0 {
			delete(t.byID, tl.id)
		} else {
			t.byID[tl.id] = set
		}
	}
	t.mu.Unlock()
	if tl != nil {
		close(tl.done)
	}
}

// waitPrior waits until every connection with cl's ID that mochi was
// handling when cl sent CONNECT has finished; it reports whether there were
// any (and so whether a repair may be needed).
func (t *tails) waitPrior(cl *mqtt.Client) (had bool) {
	t.mu.Lock()
	var prior []chan struct{}
	if tl := t.byConn[cl.Net.Conn]; tl != nil {
		prior = tl.prior
	}
	t.mu.Unlock()
	if len(prior) == 0 {
		return false
	}
	timeout := time.NewTimer(tailWait)
	defer timeout.Stop()
	for _, done := range prior {
		select {
		case <-done:
		case <-timeout.C:
			return true
		}
	}
	return len(prior) > 0
}

// settle runs in OnSessionEstablished of a new connection: it waits for
// older connections with the same ID and restores what their ends removed.
func (s *Server) settle(cl *mqtt.Client) {
	if cl.Net.Inline || !s.tails.waitPrior(cl) {
		return
	}
	if cur, ok := s.mochi.Clients.Get(cl.ID); !ok || cur != cl {
		s.mochi.Clients.Add(cl)
		s.log.Debug("restored client entry removed by an old connection's end", "client", cl.ID)
	}
	for _, sub := range cl.State.Subscriptions.GetAll() {
		if s.mochi.Topics.Subscribe(cl.ID, sub) {
			atomic.AddInt64(&s.mochi.Info.Subscriptions, 1)
			s.log.Debug("restored subscription removed by an old connection's end", "client", cl.ID, "filter", sub.Filter)
		}
	}
}
