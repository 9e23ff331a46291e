package broker_test

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"

	"github.com/lastmile-dm/lastmile/broker"
)

// wsConn adapts a WebSocket to the net.Conn an MQTT client expects: MQTT
// bytes travel in binary messages.
type wsConn struct {
	*websocket.Conn
	r  io.Reader
	mu sync.Mutex // gorilla allows one writer at a time
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			_, r, err := c.NextReader()
			if err != nil {
				return 0, err
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

var _ net.Conn = (*wsConn)(nil)

func TestWebSocketListener(t *testing.T) {
	t.Parallel()
	h := start(t, "", func(c *broker.Config) { c.WSAddr = "127.0.0.1:0" })
	addr := h.srv.Addrs()["ws"].String()
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second}
	ws, _, err := d.Dial("ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: &wsConn{Conn: ws}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: "dev1", Username: "dev1", UsernameFlag: true, Password: []byte("pw-dev1"), PasswordFlag: true, KeepAlive: 30, CleanStart: true})
	if err != nil {
		t.Fatalf("connect over WebSocket: %v %+v", err, ca)
	}
	defer c.Disconnect(&paho.Disconnect{})
	if pr, err := c.Publish(ctx, &paho.Publish{Topic: "tele/dev2/x", QoS: 1, Payload: []byte("x")}); pr == nil || pr.ReasonCode != 0x87 {
		t.Fatalf("ACL over WebSocket: %+v %v, want 0x87", pr, err)
	}
	waitFor(t, "presence over WebSocket", func() bool { _, ok := h.presence.current("dev1"); return ok })
}
