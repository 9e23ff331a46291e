package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lastmile-dm/lastmile/dm/token"
	"github.com/lastmile-dm/lastmile/internal/apitest"
	"github.com/lastmile-dm/lastmile/internal/tunneltest"
	"github.com/lastmile-dm/lastmile/services"
	"github.com/lastmile-dm/lastmile/tunnel/endpoint"
	"github.com/lastmile-dm/lastmile/tunnel/relay"
)

// syncBuffer is a bytes.Buffer safe for a writer and a poller.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type server struct {
	grpcAddr string
	admin    string // every permission
	reader   string // devices:read only
	relay    *relay.Relay
}

// startServer runs the northbound API with a tunnel relay on a real broker,
// and an agent tunnel endpoint for device dev1 on a real MQTT client.
func startServer(t testing.TB, allow ...string) *server {
	t.Helper()
	c := apitest.NewCore(t)
	s := &server{}
	s.admin, s.reader = c.Token(t, "admin", token.PermTunnel), c.Token(t, "reader", token.PermDevicesRead)
	b := tunneltest.Broker(t)
	pub, key, _ := ed25519.GenerateKey(nil)
	var err error
	s.relay, err = relay.New(relay.Config{PubSub: tunneltest.Platform{B: b}, SigningKey: key, Logger: tunneltest.Quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.relay.Shutdown)
	s.grpcAddr = c.Serve(t, services.Config{Tunnels: s.relay, Logger: tunneltest.Quiet}).GRPCAddr

	ep, err := endpoint.New(endpoint.Config{DeviceID: "dev1", PubSub: tunneltest.Connect(t, b, "dev1"), AllowList: allow,
		TrustedKeys: []ed25519.PublicKey{pub}, Logger: tunneltest.Quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := ep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ep.Close() })
	return s
}

var forwarding = regexp.MustCompile(`forwarding (127\.0\.0\.1:\d+) -> `)

// forward runs "lmctl tunnel ..." until the returned stop is called, and
// returns the local address it listens on.
func forward(t testing.TB, s *server, target string) (addr string, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	forwardContext = func() (context.Context, context.CancelFunc) { return context.WithCancel(ctx) }
	var stdout, stderr syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- run([]string{"--server", s.grpcAddr, "--token", s.admin, "tunnel", "--device", "dev1",
			"--target", target, "--listen", "127.0.0.1:0"}, &stdout, &stderr)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := forwarding.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
			break
		}
		select {
		case c := <-code:
			t.Fatalf("lmctl tunnel exited %d: %s", c, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("lmctl tunnel never listened: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	var once sync.Once
	var rc int
	return addr, func() int {
		once.Do(func() { cancel(); rc = <-code })
		return rc
	}
}

// TestCurlThroughLmctlTunnel: curl, unchanged, reaches an HTTP server
// behind the agent through "lmctl tunnel", for a small page and a large
// download with a checksum.
func TestCurlThroughLmctlTunnel(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed (make test-deps)")
	}
	big := make([]byte, 8<<20)
	_, _ = rand.Read(big)
	sum := sha256.Sum256(big)
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "hello from behind the NAT\n") })
	mux.HandleFunc("/big", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(big) })
	hs := &http.Server{Handler: mux}
	go func() { _ = hs.Serve(hl) }()
	t.Cleanup(func() { _ = hs.Close() })
	target := hl.Addr().String()

	s := startServer(t, target)
	addr, stop := forward(t, s, target)

	out, err := exec.Command("curl", "-sS", "--max-time", "30", "http://"+addr+"/hello").CombinedOutput()
	if err != nil || string(out) != "hello from behind the NAT\n" {
		t.Fatalf("curl /hello: %v: %s", err, out)
	}
	out, err = exec.Command("sh", "-c", "curl -sS --max-time 60 http://"+addr+"/big | sha256sum").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), hex.EncodeToString(sum[:])) {
		t.Fatalf("curl /big: %v: checksum %s, want %x", err, out, sum)
	}
	// Several at once, each its own stream of the one tunnel.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			out, err := exec.Command("curl", "-sS", "--max-time", "30", "http://"+addr+"/hello").CombinedOutput()
			if err != nil || string(out) != "hello from behind the NAT\n" {
				t.Errorf("parallel curl: %v: %s", err, out)
			}
		})
	}
	wg.Wait()
	if n := len(s.relay.List()); n != 1 {
		t.Fatalf("%d tunnels open while forwarding, want 1", n)
	}
	if rc := stop(); rc != 0 {
		t.Fatalf("lmctl tunnel exited %d after Ctrl-C", rc)
	}
	if n := len(s.relay.List()); n != 0 {
		t.Fatalf("%d tunnels left open after lmctl stopped", n)
	}
}

func TestLmctlTunnelRefusals(t *testing.T) {
	s := startServer(t, "127.0.0.1:22")
	var stdout, stderr syncBuffer
	rc := run([]string{"--server", s.grpcAddr, "--token", s.admin, "tunnel", "--device", "dev1", "--target", "127.0.0.1:23"}, &stdout, &stderr)
	if rc != 1 || !strings.Contains(stderr.String(), "FailedPrecondition") || !strings.Contains(stderr.String(), "127.0.0.1:23 is not on this device's tunnel allow-list") {
		t.Fatalf("target off the allow-list: exit %d, %s", rc, stderr.String())
	}
	stderr = syncBuffer{}
	rc = run([]string{"--server", s.grpcAddr, "--token", s.reader, "tunnel", "--device", "dev1", "--target", "127.0.0.1:22"}, &stdout, &stderr)
	if rc != 1 || !strings.Contains(stderr.String(), "PermissionDenied") || !strings.Contains(stderr.String(), `lacks permission "tunnel"`) {
		t.Fatalf("token without the tunnel permission: exit %d, %s", rc, stderr.String())
	}
	stderr = syncBuffer{}
	rc = run([]string{"--server", s.grpcAddr, "--token", s.admin, "tunnel", "--device", "dev1"}, &stdout, &stderr)
	if rc != 2 || !strings.Contains(stderr.String(), "--target") {
		t.Fatalf("missing --target: exit %d, %s", rc, stderr.String())
	}
	stdout = syncBuffer{}
	if rc := run([]string{"--server", s.grpcAddr, "--token", s.admin, "tunnel", "key"}, &stdout, &stderr); rc != 0 {
		t.Fatalf("tunnel key: exit %d: %s", rc, stderr.String())
	}
	if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(stdout.String())); err != nil || !bytes.Equal(k, s.relay.PublicKey()) {
		t.Fatalf("tunnel key printed %q", stdout.String())
	}
}

// BenchmarkForward: bulk upload and one-byte round trips through the whole
// operator path (local TCP -> lmctl -> gRPC Connect -> relay -> broker ->
// paho agent -> target) against direct loopback TCP in the same run.
func BenchmarkForward(b *testing.B) {
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	go func() {
		for {
			c, err := sink.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 256<<10)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if n == 1 { // a round-trip probe
						_, _ = c.Write(buf[:1])
					}
				}
			}()
		}
	}()
	target := sink.Addr().String()
	s := startServer(b, target)
	via, stop := forward(b, s, target)
	defer stop()
	for _, path := range []struct{ name, addr string }{{"direct", target}, {"lmctl", via}} {
		b.Run("upload-"+path.name, func(b *testing.B) {
			c, err := net.Dial("tcp", path.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, 256<<10)
			b.SetBytes(int64(len(buf)))
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("roundtrip-"+path.name, func(b *testing.B) {
			c, err := net.Dial("tcp", path.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			one := make([]byte, 1)
			lat := make([]time.Duration, 0, b.N)
			for range b.N {
				t0 := time.Now()
				if _, err := c.Write(one); err != nil {
					b.Fatal(err)
				}
				if _, err := c.Read(one); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		})
	}
}

// TestUploadThroughLmctlTunnel: 16 MB written in pieces of every size from
// one byte to more than a data frame arrive intact and in order at a
// target behind the agent (the server packs queued Connect messages into
// frames and decodes them into pooled buffers; a mix-up shows here).
func TestUploadThroughLmctlTunnel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				h := sha256.New()
				if _, err := io.Copy(h, c); err == nil {
					_, _ = c.Write(h.Sum(nil))
				}
			}()
		}
	}()
	target := ln.Addr().String()
	s := startServer(t, target)
	addr, stop := forward(t, s, target)
	defer stop()

	data := make([]byte, 16<<20)
	_, _ = rand.Read(data)
	want := sha256.Sum256(data)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	sizes := []int{1, 7, 1000, 64 << 10, 65<<10 + 3, 200 << 10, 300 << 10, 13}
	for i, rest := 0, data; len(rest) > 0; i++ {
		n := min(sizes[i%len(sizes)], len(rest))
		if _, err := c.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("no checksum from the target: %v", err)
	}
	if !bytes.Equal(got, want[:]) {
		t.Fatalf("target hashed %x, sent %x", got, want)
	}
}
