package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/lastmile-dm/lastmile/internal/redistest"
)

// buildLastmile compiles cmd/lastmile from this module into dir.
func buildLastmile(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "lastmile")
	cmd := exec.Command("go", "build", "-o", bin, "../../cmd/lastmile")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/lastmile: %v\n%s", err, out)
	}
	return bin
}

// TestLastmileScenarios runs the lastmile-only scenarios small against a
// real lastmile built from this tree (shadow on each store).
func TestLastmileScenarios(t *testing.T) {
	t.Parallel()
	bin := buildLastmile(t, t.TempDir())
	for _, store := range []string{"embedded", "redis"} {
		t.Run("shadow-"+store, func(t *testing.T) {
			t.Parallel()
			l := &Lastmile{Binary: bin, DataDir: filepath.Join(t.TempDir(), "data")}
			if store == "redis" {
				l.Extra = []string{"--store", "redis", "--redis-addr", redistest.Start(t)}
			}
			testShadow(t, l)
		})
	}
	t.Run("connect-cluster", func(t *testing.T) {
		t.Parallel()
		testConnectCluster(t, &Lastmile{Binary: bin, DataDir: filepath.Join(t.TempDir(), "data"), Nodes: 2,
			Extra: []string{"--store", "redis", "--redis-addr", redistest.Start(t)}})
	})
	t.Run("tunnel", func(t *testing.T) {
		t.Parallel()
		testTunnel(t, &Lastmile{Binary: bin, DataDir: filepath.Join(t.TempDir(), "data")})
	})
	t.Run("snmp", func(t *testing.T) {
		t.Parallel()
		if _, err := os.Stat(SNMPDBinary); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("snmpd is required: make test-deps")
			}
			t.Skip("snmpd not installed (make test-deps)")
		}
		testSNMP(t, &Lastmile{Binary: bin, DataDir: filepath.Join(t.TempDir(), "data")})
	})
}

// testConnectCluster: two lastmile nodes on one Redis, devices connected
// from two generator processes, spread over both nodes; RSS and CPU are
// those of both processes.
func testConnectCluster(t *testing.T, l *Lastmile) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := Case{"connect", "connect", Params{Devices: 24, Sources: 2, Procs: 2}}
	if err := Provision(ctx, []Target{l}, []Case{c}); err != nil {
		t.Fatal(err)
	}
	r, err := RunOnce(ctx, l, c, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(brief(r))
	if fig := figures(r); fig["failed"] != 0 || fig["connects"] <= 0 || fig["rss_after"] <= 0 {
		t.Fatalf("figures: %+v", r.Figures)
	}
	// Both nodes listen on their own address, and each holds its share.
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	addrs, pids := l.Addrs(), l.PIDs()
	if len(addrs) != 2 || addrs[0] == addrs[1] || addrs[1] == "" || len(pids) != 2 || pids[0] == pids[1] {
		t.Fatalf("cluster: addrs %q pids %v", addrs, pids)
	}
	env := Env{Target: l, Log: &bytes.Buffer{}}
	clients, failed, err := connectAll(ctx, env, Params{Sources: 1}, 4, 2, true)
	defer closeAll(clients)
	if err != nil || failed != 0 {
		t.Fatalf("connect: %d failed, %v", failed, err)
	}
	for i, cl := range clients {
		if got, want := cl.conn.RemoteAddr().String(), addrs[i%2]; got != want {
			t.Errorf("device %d connected to %s, want %s", i, got, want)
		}
	}
}

// testSNMP: GETs went through the proxy and directly, and the figures
// are consistent.
func testSNMP(t *testing.T, l *Lastmile) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := Case{"snmp", "snmp", Params{Duration: 300 * time.Millisecond}}
	if err := Provision(ctx, []Target{l}, []Case{c}); err != nil {
		t.Fatal(err)
	}
	r, err := RunOnce(ctx, l, c, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(brief(r))
	fig := figures(r)
	if fig["gets_proxy"] < 1 || fig["get_proxy_p50"] <= 0 || fig["get_proxy_p99"] < fig["get_proxy_p50"] ||
		fig["get_direct_p50"] <= 0 || fig["get_direct_p99"] < fig["get_direct_p50"] {
		t.Fatalf("figures: %+v", r.Figures)
	}
}

func figures(r Result) map[string]float64 {
	fig := map[string]float64{}
	for _, f := range r.Figures {
		fig[f.Name] = f.Value
	}
	return fig
}

// testTunnel: bytes and round trips went through the tunnel and directly,
// and the figures are consistent.
func testTunnel(t *testing.T, l *Lastmile) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := Case{"tunnel", "tunnel", Params{Duration: 300 * time.Millisecond}}
	if err := Provision(ctx, []Target{l}, []Case{c}); err != nil {
		t.Fatal(err)
	}
	r, err := RunOnce(ctx, l, c, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(brief(r))
	fig := figures(r)
	if fig["upload_tunnel"] <= 0 || fig["upload_direct"] <= 0 || fig["round_trips_tunnel"] < 1 {
		t.Fatalf("figures: %+v", r.Figures)
	}
	if fig["rtt_tunnel_p50"] <= 0 || fig["rtt_tunnel_p99"] < fig["rtt_tunnel_p50"] || fig["rtt_direct_p99"] < fig["rtt_direct_p50"] {
		t.Fatalf("implausible round trips: %+v", r.Figures)
	}
}

func testShadow(t *testing.T, l *Lastmile) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := Case{"shadow", "shadow", Params{Devices: 8, Window: 2, Duration: 500 * time.Millisecond, Sources: 2}}
	if err := Provision(ctx, []Target{l}, []Case{c}); err != nil {
		t.Fatal(err)
	}
	r, err := RunOnce(ctx, l, c, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	fig := figures(r)
	t.Log(brief(r))
	if fig["accepted"] <= 0 || fig["rejected"] != 0 || fig["unanswered"] != 0 || fig["updates"] <= 0 {
		t.Fatalf("figures: %+v", r.Figures)
	}
	if fig["p50"] <= 0 || fig["p99"] < fig["p50"] || fig["max"] < fig["p99"] || fig["server_cpu_per_update"] < 0 {
		t.Fatalf("implausible latencies: %+v", r.Figures)
	}
	// The shadows hold what was accepted: versions sum to the count.
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	var versions float64
	for i := range 8 {
		var sh struct {
			Version any `json:"version"`
		}
		if err := l.api(ctx, "GET", "/v1/devices/"+DeviceID(i)+"/shadow", nil, &sh); err != nil {
			t.Fatal(err)
		}
		var v float64
		if _, err := fmt.Sscan(fmt.Sprint(sh.Version), &v); err != nil {
			t.Fatalf("device %d: version %v: %v", i, sh.Version, err)
		}
		versions += v
	}
	if versions != fig["accepted"] {
		t.Errorf("shadow versions sum to %v, %v updates accepted", versions, fig["accepted"])
	}
}

// TestLastmileOnlySkipped: a lastmile-only scenario is not run against
// mosquitto, and its rows have lastmile's figures and no ratio.
func TestLastmileOnlySkipped(t *testing.T) {
	t.Parallel()
	m := &Mosquitto{Binary: "/nonexistent/mosquitto", Dir: t.TempDir()}
	_, err := RunOnce(context.Background(), m, Case{"shadow", "shadow", Params{Devices: 1, Duration: time.Second}}, &bytes.Buffer{})
	if !errors.Is(err, ErrNotApplicable) {
		t.Fatalf("shadow on mosquitto: %v, want ErrNotApplicable", err)
	}
	rs := rows("shadow", []string{"lastmile", "mosquitto"}, map[string][]Result{
		"lastmile": {{Figures: []Figure{{Name: "updates", Value: 10}}}}})
	if len(rs) != 1 || rs[0].Targets["lastmile"].Median != 10 || !math.IsNaN(rs[0].Ratio) {
		t.Fatalf("rows: %+v", rs)
	}
}
