package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/lastmile-dm/lastmile/third_party/mochi/listeners"
)

// wsListener serves MQTT over WebSocket on a listener the broker has
// already bound, so Start reports a port that is taken and returns only
// once the port accepts connections (mochi's own WebSocket listener binds
// later, in the background).
type wsListener struct {
	id  string
	ln  net.Listener
	log *slog.Logger

	// mu orders Serve and Close, which mochi calls from different
	// goroutines: a Close that comes first makes Serve return at once.
	mu     sync.Mutex
	srv    *http.Server
	closed bool
}

var _ listeners.Listener = (*wsListener)(nil)

var upgrader = websocket.Upgrader{
	Subprotocols: []string{"mqtt"},
	// Devices are not browsers; a browser client authenticates like any other.
	CheckOrigin: func(*http.Request) bool { return true },
}

func newWSListener(id string, ln net.Listener) *wsListener {
	return &wsListener{id: id, ln: ln}
}

func (l *wsListener) ID() string       { return l.id }
func (l *wsListener) Address() string  { return l.ln.Addr().String() }
func (l *wsListener) Protocol() string { return "ws" }

func (l *wsListener) Init(log *slog.Logger) error {
	l.log = log
	return nil
}

func (l *wsListener) Serve(establish listeners.EstablishFn) {
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := upgrader.Upgrade(w, r, nil)
			if err != nil {
				return // the upgrader answered with an HTTP error
			}
			defer c.Close()
			_ = establish(l.id, &wsConn{Conn: c.UnderlyingConn(), ws: c})
		}),
		ErrorLog: slog.NewLogLogger(l.log.Handler(), slog.LevelDebug),
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.srv = srv
	l.mu.Unlock()
	if err := srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		l.log.Error("websocket listener stopped", "listener", l.id, "error", err)
	}
}

func (l *wsListener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	srv := l.srv
	l.closed = true
	l.mu.Unlock()
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	} else {
		_ = l.ln.Close()
	}
	closeClients(l.id)
}

// wsConn carries MQTT bytes in binary WebSocket messages.
type wsConn struct {
	net.Conn
	ws *websocket.Conn
	r  io.Reader  // the message being read, or nil
	mu sync.Mutex // one writer at a time
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			op, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, errors.New("websocket: MQTT needs binary messages")
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

// NetConn returns the connection under the WebSocket, so that the mochi
// fork finds its non-blocking writer (backlogConn) and writes deliveries
// from the publisher's goroutine.
func (c *wsConn) NetConn() net.Conn { return c.Conn }

func (c *wsConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}
