package bench

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/lastmile-dm/lastmile/dm/topic"
	_ "github.com/lastmile-dm/lastmile/internal/grpcbuf" // gRPC buffers sized for bulk streams
	tunnelv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/tunnel/v1"
	"github.com/lastmile-dm/lastmile/third_party/paho/paho"
	"github.com/lastmile-dm/lastmile/tunnel"
	"github.com/lastmile-dm/lastmile/tunnel/endpoint"
)

func init() {
	Register(Scenario{
		Name:         "tunnel",
		Help:         "lastmile only. Device dev-00000 runs the agent's tunnel endpoint (paho MQTT 5 client); the harness opens tunnels to two loopback servers through the REST API and carries bytes over gRPC Connect. Bulk upload MB/s and one-byte round trips p50/p99, through the tunnel and over direct loopback TCP in the same run, -duration each (four phases).",
		Devices:      func(Params) int { return 1 },
		Run:          runTunnel,
		LastmileOnly: true,
	})
}

// tunnelChunk is what the uploader writes at a time.
const tunnelChunk = 64 << 10

// maxRoundTrips bounds a round-trip phase in count as well as in time.
const maxRoundTrips = 200000

func runTunnel(ctx context.Context, env Env, p Params) (Result, error) {
	r := Result{Scenario: "tunnel", Target: env.Target.Name()}
	l, ok := env.Target.(*Lastmile)
	if !ok {
		return r, ErrNotApplicable
	}
	if p.Duration <= 0 {
		return r, errors.New("tunnel: -duration must be positive")
	}
	sinkAddr, stopSink, err := serveLoopback(sink)
	if err != nil {
		return r, err
	}
	defer stopSink()
	pongAddr, stopPong, err := serveLoopback(pong)
	if err != nil {
		return r, err
	}
	defer stopPong()

	var key struct {
		PublicKey string `json:"public_key"`
	}
	if err := l.api(ctx, "GET", "/v1/tunnel-key", nil, &key); err != nil {
		return r, fmt.Errorf("tunnel key: %w", err)
	}
	pub, err := base64.StdEncoding.DecodeString(key.PublicKey)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return r, fmt.Errorf("tunnel key %q: not an Ed25519 public key", key.PublicKey)
	}
	id := DeviceID(0)
	dev, err := dialDevice(ctx, l.Addr(), id, l.Creds().DevicePassword[id])
	if err != nil {
		return r, err
	}
	defer dev.close()
	ep, err := endpoint.New(endpoint.Config{DeviceID: id, PubSub: dev, AllowList: []string{sinkAddr, pongAddr},
		TrustedKeys: []ed25519.PublicKey{pub}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return r, err
	}
	if err := ep.Start(); err != nil {
		return r, err
	}
	defer func() { _ = ep.Close() }()

	grpcAddr, token := l.out.Addr("grpc"), l.out.Token()
	gc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return r, err
	}
	defer func() { _ = gc.Close() }()
	open := func(target string) (*tunnelConn, error) {
		var t struct {
			ID string `json:"id"`
		}
		if err := l.api(ctx, "POST", "/v1/devices/"+id+"/tunnels", map[string]string{"target": target}, &t); err != nil {
			return nil, fmt.Errorf("open tunnel to %s: %w", target, err)
		}
		return dialTunnel(ctx, tunnelv1.NewTunnelServiceClient(gc), token, t.ID)
	}

	// Upload: direct, then through the tunnel.
	direct, err := net.Dial("tcp", sinkAddr)
	if err != nil {
		return r, err
	}
	dBytes, dTime, err := upload(ctx, direct.(*net.TCPConn), p.Duration)
	_ = direct.Close()
	if err != nil {
		return r, fmt.Errorf("direct upload: %w", err)
	}
	tc, err := open(sinkAddr)
	if err != nil {
		return r, err
	}
	m := startCPU(l.PID())
	tBytes, tTime, err := upload(ctx, tc, p.Duration)
	bcpu, gcpu, _ := m.stop()
	_ = tc.Close()
	if err != nil {
		return r, fmt.Errorf("tunnel upload: %w", err)
	}

	// Round trips: direct, then through the tunnel.
	direct, err = net.Dial("tcp", pongAddr)
	if err != nil {
		return r, err
	}
	dLat, err := roundTrips(ctx, direct, p.Duration)
	_ = direct.Close()
	if err != nil {
		return r, fmt.Errorf("direct round trips: %w", err)
	}
	tc, err = open(pongAddr)
	if err != nil {
		return r, err
	}
	tLat, err := roundTrips(ctx, tc, p.Duration)
	_ = tc.Close()
	if err != nil {
		return r, fmt.Errorf("tunnel round trips: %w", err)
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	q := func(l []time.Duration, p float64) time.Duration { return l[int(p*float64(len(l)-1))] }
	dRate, tRate := float64(dBytes)/dTime.Seconds(), float64(tBytes)/tTime.Seconds()
	r.add("upload_tunnel", "MB/s", tRate/1e6, true)
	r.add("upload_direct", "MB/s", dRate/1e6, true)
	r.add("upload_tunnel/direct", "", tRate/dRate, true)
	r.add("server_cpu_per_MB", "ms", ms(bcpu)/(float64(tBytes)/1e6), false)
	r.add("generator_cpu_per_MB", "ms", ms(gcpu)/(float64(tBytes)/1e6), false)
	r.add("rtt_tunnel_p50", "ms", ms(q(tLat, 0.5)), false)
	r.add("rtt_tunnel_p99", "ms", ms(q(tLat, 0.99)), false)
	r.add("rtt_direct_p50", "ms", ms(q(dLat, 0.5)), false)
	r.add("rtt_direct_p99", "ms", ms(q(dLat, 0.99)), false)
	r.add("rtt_added_p50", "ms", ms(q(tLat, 0.5)-q(dLat, 0.5)), false)
	r.add("rtt_tunnel/direct_p50", "", float64(q(tLat, 0.5))/float64(q(dLat, 0.5)), false)
	r.add("round_trips_tunnel", "", float64(len(tLat)), true)
	return r, nil
}

// serveLoopback runs handle for every connection to a new loopback
// listener until stop.
func serveLoopback(handle func(*net.TCPConn)) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					_ = c.Close()
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
				}()
				handle(c.(*net.TCPConn))
			})
		}
	})
	return ln.Addr().String(), func() {
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}, nil
}

// sink reads everything and answers one byte at EOF, so that the writer
// knows when all its bytes arrived.
func sink(c *net.TCPConn) {
	if _, err := io.Copy(io.Discard, c); err == nil {
		_, _ = c.Write([]byte{1})
	}
}

// pong answers every byte with a byte.
func pong(c *net.TCPConn) {
	b := make([]byte, 1)
	for {
		if _, err := c.Read(b); err != nil {
			return
		}
		if _, err := c.Write(b); err != nil {
			return
		}
	}
}

type halfCloser interface {
	io.ReadWriter
	CloseWrite() error
}

// upload writes for d, half-closes and waits for the sink's byte; it
// returns the bytes written and the time until that byte.
func upload(ctx context.Context, c halfCloser, d time.Duration) (int64, time.Duration, error) {
	buf := make([]byte, tunnelChunk)
	start := time.Now()
	var n int64
	for time.Since(start) < d && ctx.Err() == nil {
		if _, err := c.Write(buf); err != nil {
			return 0, 0, err
		}
		n += int64(len(buf))
	}
	if err := c.CloseWrite(); err != nil {
		return 0, 0, err
	}
	if _, err := io.ReadFull(c, buf[:1]); err != nil {
		return 0, 0, fmt.Errorf("waiting for the sink: %w", err)
	}
	return n, time.Since(start), ctx.Err()
}

// roundTrips sends one byte and waits for it back, for d or
// maxRoundTrips; it returns the sorted round trips.
func roundTrips(ctx context.Context, c io.ReadWriter, d time.Duration) ([]time.Duration, error) {
	one := make([]byte, 1)
	var lat []time.Duration
	start := time.Now()
	for time.Since(start) < d && len(lat) < maxRoundTrips && ctx.Err() == nil {
		t0 := time.Now()
		if _, err := c.Write(one); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(c, one); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(t0))
	}
	if len(lat) == 0 {
		return nil, errors.New("no round trip completed")
	}
	slices.Sort(lat)
	return lat, ctx.Err()
}

// tunnelConn is one connection through a tunnel: a gRPC Connect stream,
// as lmctl forwards it.
type tunnelConn struct {
	s      grpc.BidiStreamingClient[tunnelv1.ConnectRequest, tunnelv1.ConnectResponse]
	cancel context.CancelFunc
	rest   []byte
	eof    bool
}

func dialTunnel(ctx context.Context, c tunnelv1.TunnelServiceClient, token, id string) (*tunnelConn, error) {
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token))
	s, err := c.Connect(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	if err := s.Send(&tunnelv1.ConnectRequest{TunnelId: id}); err != nil {
		cancel()
		return nil, err
	}
	return &tunnelConn{s: s, cancel: cancel}, nil
}

func (t *tunnelConn) Write(b []byte) (int, error) {
	if err := t.s.Send(&tunnelv1.ConnectRequest{Data: b}); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (t *tunnelConn) Read(b []byte) (int, error) {
	for len(t.rest) == 0 {
		if t.eof {
			return 0, io.EOF
		}
		m, err := t.s.Recv()
		if err != nil {
			return 0, err
		}
		t.rest = m.GetData()
		t.eof = m.GetCloseWrite()
	}
	n := copy(b, t.rest)
	t.rest = t.rest[n:]
	return n, nil
}

func (t *tunnelConn) CloseWrite() error {
	if err := t.s.Send(&tunnelv1.ConnectRequest{CloseWrite: true}); err != nil {
		return err
	}
	return t.s.CloseSend()
}

func (t *tunnelConn) Close() error {
	t.cancel()
	return nil
}

// device is a device's MQTT 5 connection (paho) as the tunnel endpoint
// uses it, like the agent's.
type device struct {
	c  *paho.Client
	mu sync.Mutex
	hs map[string]func(string, []byte)
}

var _ tunnel.PubSub = (*device)(nil)

func dialDevice(ctx context.Context, addr, id, password string) (*device, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	d := &device{hs: map[string]func(string, []byte){}}
	d.c = paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){d.receive}})
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := d.c.Connect(cctx, &paho.Connect{ClientID: id, Username: id, UsernameFlag: true,
		Password: []byte(password), PasswordFlag: true, CleanStart: true, KeepAlive: 60}); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("connect %s: %w", id, err)
	}
	return d, nil
}

func (d *device) close() { _ = d.c.Disconnect(&paho.Disconnect{}) }

// Publish implements tunnel.PubSub.
func (d *device) Publish(ctx context.Context, t string, qos byte, b []byte) error {
	_, err := d.c.Publish(ctx, &paho.Publish{Topic: t, QoS: qos, Payload: b})
	return err
}

// Subscribe implements tunnel.PubSub.
func (d *device) Subscribe(f string, qos byte, h func(string, []byte)) (func(), error) {
	d.mu.Lock()
	d.hs[f] = h
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
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

// receive hands a message to the matching handlers on paho's receive
// goroutine, in order, as the endpoint requires.
func (d *device) receive(pr paho.PublishReceived) (bool, error) {
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
