package shadowload

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-dm/lastmile/internal/redistest"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "shadowload")
	if err != nil {
		panic(err)
	}
	root, err := ModuleRoot(".")
	if err == nil {
		binary = filepath.Join(dir, "lastmile")
		err = Build(context.Background(), root, binary)
	}
	if err != nil {
		os.RemoveAll(dir)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestRun runs a small scenario on both stores and checks what it
// measured adds up: every update answered and accepted, and each device's
// shadow at the version its accepted updates make.
func TestRun(t *testing.T) {
	t.Parallel()
	for _, engine := range []string{"embedded", "redis"} {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			cfg := Config{Binary: binary, DataDir: t.TempDir(), Engine: engine, Devices: 8, Window: 2, Updates: 400,
				Timeout: 2 * time.Minute, Verify: true, Logf: t.Logf}
			if engine == "redis" {
				cfg.RedisAddr = redistest.Start(t)
			}
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Log(res)
			if res.Sent != 400 || res.Accepted != 400 || res.Rejected != 0 || res.Wrong != 0 {
				t.Fatalf("sent %d, accepted %d, rejected %d, devices with a wrong version %d", res.Sent, res.Accepted, res.Rejected, res.Wrong)
			}
			if res.ServerCPU <= 0 || res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P99 {
				t.Fatalf("implausible measurement: %+v", res)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []Config{
		{},
		{Binary: "x"},
		{Binary: "x", DataDir: "d", Engine: "redis"},
		{Binary: "x", DataDir: "d", Engine: "sqlite"},
		{Binary: "x", DataDir: "d", Devices: -1},
	} {
		if _, err := Run(context.Background(), c); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

func TestParseStatCPU(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1234 (lastmile) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 12 0 100 0 0", 3250 * time.Millisecond, true},
		{"7 (a b) c) R 1 1 1 0 -1 0 0 0 0 0 1 2 0 0", 30 * time.Millisecond, true},
		{"no paren", 0, false},
		{"1 (x) S 1 2", 0, false},
		{"1 (x) S 1 1 1 0 -1 0 0 0 0 0 x 2", 0, false},
	} {
		got, err := parseStatCPU([]byte(c.in))
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("%q: %v, %v; want %v (ok %v)", c.in, got, err, c.want, c.ok)
		}
	}
}

func FuzzParseStatCPU(f *testing.F) {
	f.Add([]byte("1234 (lastmile) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0"))
	f.Add([]byte("1 ())) S"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if d, err := parseStatCPU(b); err == nil && d < 0 {
			t.Fatalf("negative CPU time %v", d)
		}
	})
}

// BenchmarkShadowLoad is the command-line entry point: one run per store
// of SHADOWLOAD_UPDATES updates (default 20000) from SHADOWLOAD_DEVICES
// devices (default 100) each keeping SHADOWLOAD_WINDOW (default 1) in
// flight, against a `lastmile serve` process. Run it once (-benchtime 1x):
// a run is a whole scenario, b.N is not used. SHADOWLOAD_ARGS and
// SHADOWLOAD_ENV (space-separated KEY=value) go to the server;
// SHADOWLOAD_BINARY runs another build (e.g. of main, for a comparison).
//
//	go test -run '^$' -bench ShadowLoad -benchtime 1x ./internal/shadowload/
//	SHADOWLOAD_DEVICES=200 SHADOWLOAD_WINDOW=4 SHADOWLOAD_UPDATES=60000 SHADOWLOAD_ENGINES=embedded \
//	  SHADOWLOAD_ARGS='--pprof-addr 127.0.0.1:6060' go test -run '^$' -bench ShadowLoad -benchtime 1x ./internal/shadowload/
func BenchmarkShadowLoad(b *testing.B) {
	devices, window := envInt(b, "SHADOWLOAD_DEVICES", 100), envInt(b, "SHADOWLOAD_WINDOW", 1)
	updates := envInt(b, "SHADOWLOAD_UPDATES", 20000)
	engines := []string{"embedded", "redis"}
	if e := os.Getenv("SHADOWLOAD_ENGINES"); e != "" {
		engines = strings.Split(e, ",")
	}
	for _, engine := range engines {
		b.Run(engine, func(b *testing.B) {
			bin := binary
			if v := os.Getenv("SHADOWLOAD_BINARY"); v != "" {
				bin = v
			}
			cfg := Config{Binary: bin, DataDir: b.TempDir(), Engine: engine, Devices: devices, Window: window,
				Updates: updates, Args: strings.Fields(os.Getenv("SHADOWLOAD_ARGS")), Env: strings.Fields(os.Getenv("SHADOWLOAD_ENV")), Logf: b.Logf}
			if engine == "redis" {
				cfg.RedisAddr = redistest.Start(b)
			}
			res, err := Run(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.Log(res)
			b.ReportMetric(res.UpdatesPerSecond, "updates/s")
			b.ReportMetric(float64(res.P50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(res.P99.Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(res.Max.Microseconds())/1000, "max-ms")
			b.ReportMetric(float64(res.ServerCPUPerUpdate().Nanoseconds())/1000, "server-cpu-us/update")
			b.ReportMetric(float64(res.LoadCPUPerUpdate().Nanoseconds())/1000, "load-cpu-us/update")
			b.ReportMetric(float64(res.Rejected), "rejected")
		})
	}
}

func envInt(b *testing.B, key string, def int) int {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", key, v)
	}
	return n
}
