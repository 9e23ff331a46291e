package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-dm/lastmile/internal/serveout"
)

// lmctl runs the real lmctl against the platform and returns its stdout.
func (pl *platform) lmctl(t *testing.T, args ...string) string {
	t.Helper()
	base := []string{"--server", pl.addr("grpc"), "--token", pl.out.Token()}
	cmd := exec.Command(lmctlBin, append(base, args...)...)
	cmd.Env = serveout.CleanEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("lmctl %v: %v: %s", args, err, stderr.String())
	}
	return string(out)
}

var forwardingRe = regexp.MustCompile(`forwarding (127\.0\.0\.1:\d+) -> `)

// forward runs "lmctl tunnel" and returns the local address it listens on
// once it says so.
func (pl *platform) forward(t *testing.T, device, target string) (string, *process) {
	t.Helper()
	base := []string{"--server", pl.addr("grpc"), "--token", pl.out.Token()}
	var addr string
	found := make(chan string, 1)
	p := start(t, "lmctl tunnel", func(line string) {
		if m := forwardingRe.FindStringSubmatch(line); m != nil {
			select {
			case found <- m[1]:
			default:
			}
		}
	}, lmctlBin, append(base, "tunnel", "--device", device, "--target", target, "--listen", "127.0.0.1:0")...)
	waitFor(t, 20*time.Second, "lmctl tunnel to listen", func() bool {
		if !p.running() {
			t.Fatalf("lmctl tunnel exited: %v\n%s", p.err, p.logText())
		}
		select {
		case addr = <-found:
			return true
		default:
			return false
		}
	})
	return addr, p
}

// TestTunnelThroughAgent: the real platform, the real agent and the real
// lmctl: an HTTP client reaches a server behind the agent through
// "lmctl tunnel", a multi-megabyte body arrives intact, and a target that
// is not on the agent's allow-list is refused with the reason.
func TestTunnelThroughAgent(t *testing.T) {
	t.Parallel()
	big := make([]byte, 16<<20)
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

	pl := startPlatform(t)
	key := strings.TrimSpace(pl.lmctl(t, "tunnel", "key"))
	id := "gw-tunnel"
	dir := t.TempDir()
	secret := pl.createDevice(t, id)
	cfg := baseConfig(t, dir, id, secret, pl.addr("mqtt"), "5") + fmt.Sprintf(`
tunnel:
  allow: ["%s"]
  trusted_keys: ["%s"]
`, target, key)
	a := startAgent(t, agentConfig(t, dir, cfg))
	waitFor(t, 20*time.Second, "the agent to connect", func() bool {
		return strings.Contains(a.logText(), "connected")
	})

	addr, fwd := pl.forward(t, id, target)
	client := &http.Client{Timeout: 60 * time.Second}
	resp, err := client.Get("http://" + addr + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello from behind the NAT\n" {
		t.Fatalf("GET /hello: %q", body)
	}
	resp, err = client.Get("http://" + addr + "/big")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	if err != nil || n != int64(len(big)) || !bytes.Equal(h.Sum(nil), sum[:]) {
		t.Fatalf("GET /big: %d bytes, err %v, checksum %x, want %x", n, err, h.Sum(nil), sum)
	}
	fwd.stop(t)

	// A target the agent does not allow: lmctl says why and gives up.
	other := "127.0.0.1:1"
	base := []string{"--server", pl.addr("grpc"), "--token", pl.out.Token()}
	cmd := exec.Command(lmctlBin, append(base, "tunnel", "--device", id, "--target", other, "--listen", "127.0.0.1:0")...)
	cmd.Env = serveout.CleanEnv()
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("lmctl tunnel to %s succeeded: %s", other, out)
	}
	if !strings.Contains(string(out), "not on this device's tunnel allow-list") {
		t.Fatalf("refusal does not say why: %s", out)
	}
	a.stop(t)
}
