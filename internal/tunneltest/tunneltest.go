// Package tunneltest runs the real pieces a tunnel test needs: an
// in-process broker on 127.0.0.1:0 that admits devices with password
// "pw-<id>" (confined to their namespace by the real topic rules), the
// broker's platform messaging and a real paho MQTT 5 client, each as a
// tunnel.PubSub.
package tunneltest

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-dm/lastmile/broker"
	"github.com/lastmile-dm/lastmile/dm/topic"
	"github.com/lastmile-dm/lastmile/third_party/paho/packets"
	"github.com/lastmile-dm/lastmile/third_party/paho/paho"
	"github.com/lastmile-dm/lastmile/tunnel"
)

// Quiet discards logs.
var Quiet = slog.New(slog.DiscardHandler)

type devices struct{}

func (devices) Authenticate(_ context.Context, r broker.ConnectRequest) (*broker.Principal, error) {
	id := r.Username
	if !topic.ValidDeviceID(id) || string(r.Password) != "pw-"+id || r.ClientID != id {
		return nil, broker.ErrBadCredentials
	}
	return &broker.Principal{ID: id, Kind: broker.KindDevice,
		CanPublish:   func(t string) bool { return topic.DeviceMayPublish(id, t) },
		CanSubscribe: func(f string) bool { return topic.DeviceMaySubscribe(id, f) },
	}, nil
}

// Broker starts a broker for the test; it stops at cleanup. mods adjust
// its configuration (limits).
func Broker(tb testing.TB, mods ...func(*broker.Config)) *broker.Server {
	tb.Helper()
	cfg := broker.Config{NodeName: "t", TCPAddr: "127.0.0.1:0", Authenticator: devices{},
		Registerer: prometheus.NewRegistry(), Logger: Quiet}
	for _, m := range mods {
		m(&cfg)
	}
	srv, err := broker.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv
}

// Platform is the broker's in-process messaging as a tunnel.PubSub, the
// way the server adapts it.
type Platform struct{ B *broker.Server }

// Publish implements tunnel.PubSub.
func (p Platform) Publish(_ context.Context, t string, qos byte, b []byte) error {
	return p.B.PublishMessage(broker.Message{Topic: t, QoS: qos, Payload: b})
}

// Subscribe implements tunnel.PubSub.
func (p Platform) Subscribe(f string, _ byte, h func(string, []byte)) (func(), error) {
	return p.B.Subscribe(f, func(m broker.Message) { h(m.Topic, m.Payload) })
}

// Device is a real MQTT 5 client (paho) connected as a device, as a
// tunnel.PubSub.
type Device struct {
	c    *paho.Client
	conn *gatedConn
	mu   sync.Mutex
	hs   map[string]func(string, []byte)
}

var (
	_ tunnel.PubSub = Platform{}
	_ tunnel.PubSub = (*Device)(nil)
)

// Connect connects device id (password "pw-<id>") to srv's TCP listener.
func Connect(tb testing.TB, srv *broker.Server, id string) *Device {
	tb.Helper()
	return Dial(tb, srv.Addrs()["tcp"].String(), id, "pw-"+id)
}

// Dial connects device id with password to the MQTT listener at addr.
func Dial(tb testing.TB, addr, id, password string) *Device {
	tb.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	conn := &gatedConn{Conn: nc}
	conn.cond = sync.NewCond(&conn.mu)
	d := &Device{hs: map[string]func(string, []byte){}, conn: conn}
	tb.Cleanup(d.ResumeReads) // a paused reader must not outlive the test
	// paho writes a packet as several Writes and keeps them together only
	// on a *net.TCPConn (one writev) or a sync.Locker: gatedConn is
	// neither, so without the lock concurrent publishes, acks and pings
	// interleave and the broker drops the device for a malformed packet.
	d.c = paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), OnPublishReceived: []func(paho.PublishReceived) (bool, error){d.receive}})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := d.c.Connect(ctx, &paho.Connect{ClientID: id, Username: id, UsernameFlag: true,
		Password: []byte(password), PasswordFlag: true, CleanStart: true, KeepAlive: 30}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = d.c.Disconnect(&paho.Disconnect{}) })
	return d
}

// Publish implements tunnel.PubSub.
func (d *Device) Publish(ctx context.Context, t string, qos byte, b []byte) error {
	_, err := d.c.Publish(ctx, &paho.Publish{Topic: t, QoS: qos, Payload: b})
	return err
}

// Subscribe implements tunnel.PubSub.
func (d *Device) Subscribe(f string, qos byte, h func(string, []byte)) (func(), error) {
	d.mu.Lock()
	d.hs[f] = h
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := d.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: f, QoS: qos}}}); err != nil {
		return nil, err
	}
	return func() {
		d.mu.Lock()
		delete(d.hs, f)
		d.mu.Unlock()
	}, nil
}

func (d *Device) receive(pr paho.PublishReceived) (bool, error) {
	d.mu.Lock()
	var hs []func(string, []byte)
	for f, h := range d.hs {
		if topic.Match(f, pr.Packet.Topic) {
			hs = append(hs, h)
		}
	}
	d.mu.Unlock()
	for _, h := range hs {
		h(pr.Packet.Topic, pr.Packet.Payload)
	}
	return true, nil
}

// PauseReads stops the device from reading its socket, as a device on a
// link slower than what it is sent: the broker's writes to it back up, and
// with a small readBuffer (bytes; 0 keeps the kernel's) they back up soon.
// ResumeReads lets it read again.
//
// Keep readBuffer well above loopback's 64 KiB segments (256 KiB does):
// a receive buffer smaller than a segment makes the kernel drop segments
// instead of closing the window, and the sender's retransmission timer
// backs off to tens of seconds while reads are paused, so the connection
// stays stalled long after ResumeReads.
func (d *Device) PauseReads(readBuffer int) {
	if readBuffer > 0 {
		if tc, ok := d.conn.Conn.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(readBuffer)
		}
	}
	d.conn.mu.Lock()
	d.conn.paused = true
	d.conn.mu.Unlock()
}

// ResumeReads undoes PauseReads.
func (d *Device) ResumeReads() {
	d.conn.mu.Lock()
	d.conn.paused = false
	d.conn.mu.Unlock()
	d.conn.cond.Broadcast()
}

// gatedConn is a connection whose reads can be held back.
type gatedConn struct {
	net.Conn
	mu     sync.Mutex
	cond   *sync.Cond
	paused bool
}

func (g *gatedConn) Read(p []byte) (int, error) {
	g.mu.Lock()
	for g.paused {
		g.cond.Wait()
	}
	g.mu.Unlock()
	return g.Conn.Read(p)
}

// Drop cuts the device's network connection without an MQTT DISCONNECT,
// as a lost link would.
func (d *Device) Drop() {
	_ = d.conn.Close()
}

// testTimeout bounds a device's CONNECT and SUBSCRIBE: long enough that a
// machine busy compiling and running every package under the race
// detector is not mistaken for a broker that does not answer (a CI run
// once took over 5 s for a SUBACK).
const testTimeout = 30 * time.Second
