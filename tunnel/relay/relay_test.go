package relay_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-dm/lastmile/broker"
	"github.com/lastmile-dm/lastmile/internal/poll"
	"github.com/lastmile-dm/lastmile/internal/tunneltest"
	"github.com/lastmile-dm/lastmile/tunnel"
	"github.com/lastmile-dm/lastmile/tunnel/endpoint"
	"github.com/lastmile-dm/lastmile/tunnel/relay"
)

type audit struct {
	mu     sync.Mutex
	events []tunnel.Event
}

func (a *audit) Audit(e tunnel.Event) {
	a.mu.Lock()
	a.events = append(a.events, e)
	a.mu.Unlock()
}

func (a *audit) has(k tunnel.EventKind, r tunnel.Reason) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.events {
		if e.Kind == k && e.Reason == r {
			return true
		}
	}
	return false
}

var quiet = tunneltest.Quiet

type env struct {
	srv         *broker.Server
	key         ed25519.PrivateKey
	metrics     *prometheus.Registry
	relay       *relay.Relay
	ep          *endpoint.Endpoint
	platformLog *audit
	agentLog    *audit
}

type opts struct {
	allow       []string
	agentIdle   time.Duration
	agentLife   time.Duration
	window      uint32
	wrongKey    bool
	qos         byte
	maxStreams  int
	maxData     int
	openTimeout time.Duration
	ping        time.Duration
	broker      []func(*broker.Config)
	device      **tunneltest.Device
}

func setup(tb testing.TB, o opts) *env {
	tb.Helper()
	srv := tunneltest.Broker(tb, o.broker...)
	pub, key, _ := ed25519.GenerateKey(nil)
	if o.wrongKey {
		pub, _, _ = ed25519.GenerateKey(nil)
	}
	e := &env{platformLog: &audit{}, agentLog: &audit{}, metrics: prometheus.NewRegistry(), srv: srv, key: key}
	var err error
	e.relay, err = relay.New(relay.Config{PubSub: tunneltest.Platform{B: srv}, SigningKey: key, Audit: e.platformLog,
		Window: o.window, QoS: o.qos, MaxStreams: o.maxStreams, MaxData: o.maxData, Logger: quiet,
		Connected: srv.Connected, OpenTimeout: o.openTimeout, Registerer: e.metrics, PingInterval: o.ping})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(e.relay.Shutdown)

	ps := tunneltest.Connect(tb, srv, "dev1")
	if o.device != nil {
		*o.device = ps
	}
	e.ep, err = endpoint.New(endpoint.Config{DeviceID: "dev1", PubSub: ps, AllowList: o.allow, QoS: o.qos,
		TrustedKeys: []ed25519.PublicKey{pub}, IdleTimeout: o.agentIdle, MaxLifetime: o.agentLife, Window: o.window, MaxData: o.maxData, Audit: e.agentLog, Logger: quiet})
	if err != nil {
		tb.Fatal(err)
	}
	if err := e.ep.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = e.ep.Close() })
	return e
}

// serve runs a TCP server on a free port; handle gets each connection.
func serve(tb testing.TB, handle func(*net.TCPConn)) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	return l.Addr().String()
}

func echo(c *net.TCPConn) {
	if _, err := io.Copy(c, c); err == nil {
		_ = c.CloseWrite()
	}
}

func open(t *testing.T, e *env, target string) *relay.Session {
	t.Helper()
	s, err := e.relay.Open(context.Background(), relay.OpenRequest{DeviceID: "dev1", Target: target, Principal: "op"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// roundTrip sends n random bytes through an echo target and checks the
// SHA-256 of what comes back.
func roundTrip(t *testing.T, s *relay.Session, n int) {
	t.Helper()
	st, err := s.Dial(context.Background())
	if err != nil {
		t.Error(err)
		return
	}
	defer func() { _ = st.Close() }()
	sum := sha256.New()
	werr := make(chan error, 1)
	go func() {
		buf := make([]byte, 256<<10)
		for left := n; left > 0; {
			b := buf[:min(left, len(buf))]
			_, _ = rand.Read(b)
			sum.Write(b)
			if _, err := st.Write(b); err != nil {
				werr <- err
				return
			}
			left -= len(b)
		}
		werr <- st.CloseWrite()
	}()
	back := sha256.New()
	got, err := io.Copy(back, st)
	if err != nil {
		t.Error(err)
		return
	}
	if err := <-werr; err != nil {
		t.Error(err)
		return
	}
	if got != int64(n) || string(back.Sum(nil)) != string(sum.Sum(nil)) {
		t.Errorf("sent %d bytes, got %d back; checksums match: %v", n, got, string(back.Sum(nil)) == string(sum.Sum(nil)))
	}
}

func TestLargeTransferChecksum(t *testing.T) {
	t.Parallel()
	target := serve(t, echo)
	for _, qos := range []byte{0, 1} {
		t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) {
			e := setup(t, opts{allow: []string{target}, qos: qos})
			s := open(t, e, target)
			// 20 MB each way by default; LASTMILE_TUNNEL_100MB=1 for the
			// issue's 100 MB (about 12 s under -race).
			n := 20 << 20
			if os.Getenv("LASTMILE_TUNNEL_100MB") != "" && qos == 0 {
				n = 100 << 20
			}
			if qos == 1 {
				n = 4 << 20
			}
			roundTrip(t, s, n)
			in, out := s.Bytes()
			if in != int64(n) || out != int64(n) {
				t.Fatalf("session counted %d in, %d out", in, out)
			}
			if err := e.relay.Close(s.ID()); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "agent sees the close", func() bool { return e.ep.Sessions() == 0 })
			if got := metric(t, e.metrics, "lastmile_tunnel_bytes_total", "to_device"); got != float64(n) {
				t.Fatalf("bytes to device counted %v, want %d", got, n)
			}
			if got := metric(t, e.metrics, "lastmile_tunnel_sessions_open", ""); got != 0 {
				t.Fatalf("open sessions gauge %v after close", got)
			}
			if !e.platformLog.has(tunnel.EventSessionOpen, 0) || !e.platformLog.has(tunnel.EventSessionClose, tunnel.ReasonClosedByUser) ||
				!e.agentLog.has(tunnel.EventSessionOpen, 0) || !e.agentLog.has(tunnel.EventSessionClose, tunnel.ReasonClosedByUser) ||
				!e.agentLog.has(tunnel.EventStreamOpen, 0) || !e.platformLog.has(tunnel.EventStreamOpen, 0) ||
				!e.platformLog.has(tunnel.EventStreamClose, 0) {
				t.Fatalf("audit events missing: platform %+v agent %+v", e.platformLog.events, e.agentLog.events)
			}
		})
	}
}

func TestConcurrentStreams(t *testing.T) {
	t.Parallel()
	target := serve(t, echo)
	e := setup(t, opts{allow: []string{target}, window: 64 << 10})
	s := open(t, e, target)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { roundTrip(t, s, 1<<20) })
	}
	wg.Wait()
	if got := len(e.relay.List()); got != 1 {
		t.Fatalf("List has %d sessions", got)
	}
}

func TestHalfClose(t *testing.T) {
	t.Parallel()
	// The target answers only after the request is complete (EOF), like a
	// server reading a request body to its end.
	target := serve(t, func(c *net.TCPConn) {
		b, err := io.ReadAll(c)
		if err != nil {
			return
		}
		_, _ = fmt.Fprintf(c, "got %d bytes: %s", len(b), b)
	})
	e := setup(t, opts{allow: []string{target}})
	st, err := open(t, e, target).Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(st)
	if err != nil || string(b) != "got 5 bytes: hello" {
		t.Fatalf("read %q, %v", b, err)
	}
}

func TestReset(t *testing.T) {
	t.Parallel()
	closedByPeer := make(chan error, 1)
	target := serve(t, func(c *net.TCPConn) {
		line := make([]byte, 5)
		if _, err := io.ReadFull(c, line); err != nil {
			return
		}
		switch string(line) {
		case "abort": // the target resets the connection
			_ = c.SetLinger(0)
		case "waits": // the operator side resets; the target sees its connection end
			_, _ = c.Write([]byte("ready"))
			_, err := c.Read(make([]byte, 1))
			closedByPeer <- err
		}
	})
	e := setup(t, opts{allow: []string{target}})
	s := open(t, e, target)

	st, err := s.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = st.Write([]byte("abort"))
	_, err = io.ReadAll(st)
	if !errors.Is(err, tunnel.ErrStreamReset) {
		t.Fatalf("read after the target reset: %v", err)
	}

	st2, err := s.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = st2.Write([]byte("waits"))
	if _, err := io.ReadFull(st2, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	st2.Reset(tunnel.ReasonNormal, "operator gave up")
	if err := <-closedByPeer; err == nil {
		t.Fatal("target read data after the stream was reset")
	}
	if _, err := st2.Write([]byte("x")); !errors.Is(err, tunnel.ErrStreamReset) {
		t.Fatalf("write after reset: %v", err)
	}
	// The session outlives its streams.
	if s.Err() != nil {
		t.Fatalf("session ended: %v", s.Err())
	}
}

func TestTargetNotAllowedRefused(t *testing.T) {
	t.Parallel()
	e := setup(t, opts{allow: []string{"127.0.0.1:22"}})
	_, err := e.relay.Open(context.Background(), relay.OpenRequest{DeviceID: "dev1", Target: "127.0.0.1:23"})
	var re *tunnel.ReasonError
	if !errors.Is(err, relay.ErrRejected) || !errors.As(err, &re) || re.Reason != tunnel.ReasonNotAllowed ||
		!strings.Contains(err.Error(), "127.0.0.1:23 is not on this device's tunnel allow-list") {
		t.Fatalf("open to a target off the allow-list: %v", err)
	}
	if !e.agentLog.has(tunnel.EventSessionReject, tunnel.ReasonNotAllowed) || !e.platformLog.has(tunnel.EventSessionReject, tunnel.ReasonNotAllowed) {
		t.Fatal("refusal not audited on both sides")
	}
	waitFor(t, "refused session gone", func() bool { return e.ep.Sessions() == 0 && len(e.relay.List()) == 0 })
	if got := metric(t, e.metrics, "lastmile_tunnel_session_opens_total", "refused"); got != 1 {
		t.Fatalf("refused opens counted %v", got)
	}
}

func TestTokenFromUntrustedKeyRefused(t *testing.T) {
	t.Parallel()
	e := setup(t, opts{allow: []string{"127.0.0.1:22"}, wrongKey: true})
	_, err := e.relay.Open(context.Background(), relay.OpenRequest{DeviceID: "dev1", Target: "127.0.0.1:22"})
	var re *tunnel.ReasonError
	if !errors.As(err, &re) || re.Reason != tunnel.ReasonBadToken {
		t.Fatalf("open with a token the agent does not trust: %v", err)
	}
}

func TestDialFailureRefusesStream(t *testing.T) {
	t.Parallel()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	target := l.Addr().String()
	_ = l.Close() // nothing listens there now
	e := setup(t, opts{allow: []string{target}})
	_, err := open(t, e, target).Dial(context.Background())
	var re *tunnel.ReasonError
	if !errors.As(err, &re) || re.Reason != tunnel.ReasonDialFailed || !strings.Contains(re.Message, "refused") {
		t.Fatalf("dial to a closed port: %v", err)
	}
	if !e.platformLog.has(tunnel.EventStreamReject, tunnel.ReasonDialFailed) || !e.agentLog.has(tunnel.EventStreamReject, tunnel.ReasonDialFailed) ||
		e.platformLog.has(tunnel.EventStreamClose, tunnel.ReasonDialFailed) {
		t.Fatalf("refused stream audited wrongly: %+v", e.platformLog.events)
	}
}

func TestIdleTimeoutCloses(t *testing.T) {
	t.Parallel()
	target := serve(t, echo)
	e := setup(t, opts{allow: []string{target}, agentIdle: 300 * time.Millisecond})
	s := open(t, e, target)
	st, err := s.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("idle session still open")
	}
	if r := s.Err(); r == nil || r.Reason != tunnel.ReasonIdle || !r.Remote {
		t.Fatalf("session ended with %v, want the agent's idle timeout", r)
	}
	if _, err := st.Write([]byte("x")); !errors.Is(err, tunnel.ErrStreamReset) {
		t.Fatalf("stream of an idle-closed session: %v", err)
	}
	waitFor(t, "agent audit", func() bool { return e.agentLog.has(tunnel.EventSessionClose, tunnel.ReasonIdle) })
}

// TestSlowReaderBoundedThroughBroker: the target pours data out; the
// operator side does not read. The platform holds at most one window, and
// everything arrives intact once it reads.
func TestSlowReaderBoundedThroughBroker(t *testing.T) {
	t.Parallel()
	const window = 128 << 10
	const n = 8 << 20
	sum := make(chan [32]byte, 1)
	target := serve(t, func(c *net.TCPConn) {
		h := sha256.New()
		buf := make([]byte, 64<<10)
		for left := n; left > 0; left -= len(buf) {
			_, _ = rand.Read(buf)
			h.Write(buf)
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
		var s [32]byte
		copy(s[:], h.Sum(nil))
		sum <- s
		_ = c.CloseWrite()
		_, _ = io.Copy(io.Discard, c)
	})
	e := setup(t, opts{allow: []string{target}, window: window})
	st, err := open(t, e, target).Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "platform buffer full", func() bool { b, _ := st.Buffered(); return b == window })
	h := sha256.New()
	if _, err := io.Copy(h, st); err != nil {
		t.Fatal(err)
	}
	if want := <-sum; string(h.Sum(nil)) != string(want[:]) {
		t.Fatal("checksum differs")
	}
	if _, peak := st.Buffered(); peak > window {
		t.Fatalf("platform held %d bytes with a window of %d", peak, window)
	}
}

func TestTooManyStreams(t *testing.T) {
	t.Parallel()
	target := serve(t, echo)
	e := setup(t, opts{allow: []string{target}, maxStreams: 2})
	s := open(t, e, target)
	for range 2 {
		if _, err := s.Dial(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	var re *tunnel.ReasonError
	if _, err := s.Dial(context.Background()); !errors.As(err, &re) || re.Reason != tunnel.ReasonTooMany {
		t.Fatalf("third stream: %v", err)
	}
}

func TestOpenValidation(t *testing.T) {
	t.Parallel()
	e := setup(t, opts{})
	for _, r := range []relay.OpenRequest{
		{DeviceID: "dev/1", Target: "127.0.0.1:22"},
		{DeviceID: "dev1", Target: "127.0.0.1"},
		{DeviceID: "dev1", Target: ":22"},
	} {
		if _, err := e.relay.Open(context.Background(), r); !errors.Is(err, relay.ErrInvalid) {
			t.Errorf("Open(%+v) = %v, want ErrInvalid", r, err)
		}
	}
	if _, err := e.relay.Open(context.Background(), relay.OpenRequest{DeviceID: "offline", Target: "127.0.0.1:22"}); !errors.Is(err, relay.ErrNoAnswer) {
		t.Errorf("Open to an offline device: %v, want ErrNoAnswer", err)
	}
	if err := e.relay.Close("nope"); !errors.Is(err, relay.ErrNotFound) {
		t.Errorf("Close of an unknown session: %v", err)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, 20*time.Second, what, cond)
}

func TestDeviceWithoutEndpointDoesNotAnswer(t *testing.T) {
	t.Parallel()
	srv := tunneltest.Broker(t)
	_ = tunneltest.Connect(t, srv, "dev2") // online, but no tunnel endpoint
	_, key, _ := ed25519.GenerateKey(nil)
	r, err := relay.New(relay.Config{PubSub: tunneltest.Platform{B: srv}, SigningKey: key, Connected: srv.Connected,
		OpenTimeout: 200 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Open(context.Background(), relay.OpenRequest{DeviceID: "dev2", Target: "127.0.0.1:22"}); !errors.Is(err, relay.ErrNoAnswer) {
		t.Fatalf("Open to a device without endpoint: %v", err)
	}
	waitFor(t, "abandoned session gone", func() bool { return len(r.List()) == 0 })
}

// metric returns the value of a metric with one label value (or none).
func metric(t *testing.T, g prometheus.Gatherer, name, label string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != label) {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

// TestLostFramesEndSession: a device that stops reading its socket while
// the platform sends it QoS 0 frames (a window far beyond what the sockets
// buffer, and a broker that queues one write behind a full socket —
// misconfigured on purpose) loses frames; the gap ends the session with
// "frames lost" and the stream reports it, instead of delivering corrupted
// bytes.
func TestLostFramesEndSession(t *testing.T) {
	t.Parallel()
	target := serve(t, func(c *net.TCPConn) { _, _ = io.Copy(io.Discard, c) })
	var dev *tunneltest.Device
	e := setup(t, opts{allow: []string{target}, window: 16 << 20, device: &dev,
		broker: []func(*broker.Config){func(c *broker.Config) { c.Limits.MaxPendingWrites = 1 }}})
	s := open(t, e, target)
	st, err := s.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	dev.PauseReads(256 << 10)
	var sent atomic.Int64
	go func() {
		buf := make([]byte, 1<<20)
		for i := 0; i < 64 && s.Err() == nil; i++ {
			if _, err := st.Write(buf); err != nil {
				return
			}
			sent.Add(int64(len(buf)))
		}
	}()
	// The whole window is out: more than the sockets between broker and
	// device hold, so the broker has dropped frames. Then the device reads.
	poll.Until(t, 30*time.Second, "the window to be sent", func() bool { return sent.Load() >= 15<<20 })
	dev.ResumeReads()
	select {
	case <-s.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("session survived lost frames")
	}
	if r := s.Err(); r == nil || r.Reason != tunnel.ReasonLost || !r.Remote || !strings.Contains(r.Message, "expected frame") {
		t.Fatalf("session ended with %v, want the agent's frames-lost", r)
	}
	if _, err := st.Write(make([]byte, 1024)); !errors.Is(err, tunnel.ErrStreamReset) {
		t.Fatalf("write after the session was lost: %v", err)
	}
}

// TestSilentDeviceEndsSession: when the agent's MQTT connection goes away,
// the platform notices by its pings and ends the session.
func TestSilentDeviceEndsSession(t *testing.T) {
	t.Parallel()
	target := serve(t, echo)
	var dev *tunneltest.Device
	e := setup(t, opts{allow: []string{target}, ping: 50 * time.Millisecond, device: &dev})
	s := open(t, e, target)
	dev.Drop()
	select {
	case <-s.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("session to a vanished device still open")
	}
	if r := s.Err(); r == nil || r.Reason != tunnel.ReasonPeerGone {
		t.Fatalf("session ended with %v, want peer not answering", r)
	}
}

// TestReplayedSessionOpenRefused: a session open copied off the wire and
// published again (by anyone who may publish to the device's topic) is
// refused, and so is one with a forged token.
func TestReplayedSessionOpenRefused(t *testing.T) {
	t.Parallel()
	e := setup(t, opts{allow: []string{"127.0.0.1:22"}})
	answers := make(chan tunnel.Frame, 8)
	cancel, err := e.srv.Subscribe("$dm/dev1/tunnel/+/up", func(m broker.Message) {
		if f, err := tunnel.Decode(m.Payload); err == nil {
			answers <- f
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	publish := func(sid string, f tunnel.Frame) {
		b, err := f.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if err := e.srv.PublishMessage(broker.Message{Topic: "$dm/dev1/tunnel/" + sid + "/down", Payload: b}); err != nil {
			t.Fatal(err)
		}
	}
	answer := func() tunnel.Frame {
		select {
		case f := <-answers:
			return f
		case <-time.After(20 * time.Second):
			t.Fatal("no answer from the agent")
			return tunnel.Frame{}
		}
	}
	now := time.Now()
	tok, _ := tunnel.SignToken(tunnel.Claims{Device: "dev1", Session: "s1", Target: "127.0.0.1:22",
		IssuedAt: now.Unix(), Expires: now.Add(time.Minute).Unix()}, e.key)
	openFrame := tunnel.Frame{Type: tunnel.TypeSessionOpen, Seq: 1, Target: "127.0.0.1:22", Token: tok}
	publish("s1", openFrame)
	if f := answer(); f.Type != tunnel.TypeSessionAccept {
		t.Fatalf("first open answered %v %v", f.Type, f.Message)
	}
	publish("s1", tunnel.Frame{Type: tunnel.TypeSessionClose, Seq: 2})
	waitFor(t, "session closed", func() bool { return e.ep.Sessions() == 0 })
	publish("s1", openFrame)
	if f := answer(); f.Type != tunnel.TypeSessionReject || f.Reason != tunnel.ReasonBadToken || !strings.Contains(f.Message, "used before") {
		t.Fatalf("replayed open answered %v %v %q", f.Type, f.Reason, f.Message)
	}
	_, other, _ := ed25519.GenerateKey(nil)
	forged, _ := tunnel.SignToken(tunnel.Claims{Device: "dev1", Session: "s2", Target: "127.0.0.1:22",
		IssuedAt: now.Unix(), Expires: now.Add(time.Minute).Unix()}, other)
	publish("s2", tunnel.Frame{Type: tunnel.TypeSessionOpen, Seq: 1, Target: "127.0.0.1:22", Token: forged})
	if f := answer(); f.Type != tunnel.TypeSessionReject || f.Reason != tunnel.ReasonBadToken {
		t.Fatalf("forged open answered %v %v %q", f.Type, f.Reason, f.Message)
	}
	// A stray frame of no session makes the agent publish nothing.
	publish("s3", tunnel.Frame{Type: tunnel.TypeData, Seq: 5, Stream: 1, Data: []byte("x")})
	publish("s4", openFrame) // its token names session s1
	if f := answer(); f.Type != tunnel.TypeSessionReject || !strings.Contains(f.Message, "another session") {
		t.Fatalf("open with another session's token answered %v %q", f.Type, f.Message)
	}
}

func TestTooManySessions(t *testing.T) {
	t.Parallel()
	target := serve(t, echo)
	e := setup(t, opts{allow: []string{target}})
	for range endpoint.DefaultMaxSessions {
		open(t, e, target)
	}
	_, err := e.relay.Open(context.Background(), relay.OpenRequest{DeviceID: "dev1", Target: target})
	var re *tunnel.ReasonError
	if !errors.As(err, &re) || re.Reason != tunnel.ReasonTooMany {
		t.Fatalf("one session too many: %v", err)
	}
}

// TestMaxLifetimeCloses: a busy session still ends at the agent's maximum
// lifetime.
func TestMaxLifetimeCloses(t *testing.T) {
	t.Parallel()
	target := serve(t, echo)
	e := setup(t, opts{allow: []string{target}, agentLife: 300 * time.Millisecond})
	s := open(t, e, target)
	st, err := s.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Keep data flowing so that idleness is not the reason.
	go func() {
		buf := make([]byte, 1)
		for {
			if _, err := st.Write(buf); err != nil {
				return
			}
			if _, err := st.Read(buf); err != nil {
				return
			}
		}
	}()
	select {
	case <-s.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("session outlived its maximum lifetime")
	}
	if r := s.Err(); r == nil || r.Reason != tunnel.ReasonLifetime || !r.Remote {
		t.Fatalf("session ended with %v, want the agent's maximum lifetime", r)
	}
}
