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
	"github.com/mochi-mqtt/server/v2/listeners"
)

// wsListener serves MQTT over WebSocket on a listener the broker has
// already bound, so Start reports a port that is taken and returns only
// once the port accepts connections (mochi's own WebSocket listener binds
// later, in the background).
type wsListener struct {
	id  string
	ln  net.Listener
	srv *http.Server
	log *slog.Logger
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

// Init builds the HTTP server; mochi calls it before Serve, on the
// goroutine that later calls Close, so Close never races Serve for l.srv.
func (l *wsListener) Init(log *slog.Logger) error {
	l.log = log
	l.srv = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return nil
}

func (l *wsListener) Serve(establish listeners.EstablishFn) {
	if l.srv == nil { // Init not called: nothing to serve with
		return
	}
	l.srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return // the upgrader answered with an HTTP error
		}
		defer c.Close()
		_ = establish(l.id, &wsConn{Conn: c.UnderlyingConn(), ws: c})
	})
	if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		l.log.Error("websocket listener stopped", "listener", l.id, "error", err)
	}
}

func (l *wsListener) Close(closeClients listeners.CloseFn) {
	if l.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = l.srv.Shutdown(ctx)
	}
	_ = l.ln.Close() // Serve may not have started: Shutdown does not close it then
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

func (c *wsConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}
