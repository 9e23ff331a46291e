// Package shadowload measures device shadow updates end to end against a
// real `lastmile serve` process: it starts the binary (embedded store or
// Redis), provisions devices through the REST API, connects one MQTT 5
// client (paho.golang) per device, and has every device keep a window of
// reported-state updates in flight as fast as the server answers.
//
// It reports updates/s, the p50/p99/max round trip from PUBLISH to the
// matching update/accepted, and the CPU time the server process
// (/proc/<pid>/stat) and the load generator (getrusage) spent per update.
// The generator runs in the caller's process, never in the server's, so the
// two costs are told apart. A run is bounded in updates and in time.
//
// Run is the scenario; Build compiles the binary. The benchmark in this
// package is the entry point; lmbench can call Run directly.
package shadowload

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// Config describes one run.
type Config struct {
	// Binary is the lastmile executable (see Build). Required.
	Binary string
	// DataDir is the server's data directory; the caller owns it. Required.
	DataDir string
	// Engine is "embedded" (default) or "redis" (then RedisAddr is required).
	Engine    string
	RedisAddr string
	// Devices is the number of devices (MQTT connections); default 100.
	Devices int
	// Window is the updates each device keeps in flight; default 1. The
	// server rejects more than shadow.max_in_flight (16) with 429.
	Window int
	// Updates is how many updates the run sends in all; default 20000.
	Updates int
	// Timeout bounds the whole run, setup included; default 5m.
	Timeout time.Duration
	// Verify reads every device's shadow after the run and counts those
	// whose version is not the number of updates accepted for it.
	Verify bool
	// Args are extra `lastmile serve` arguments (e.g. --pprof-addr).
	Args []string
	// Env is extra environment for the server (KEY=value).
	Env []string
	// Logf, if set, receives progress lines.
	Logf func(format string, args ...any)
}

func (c *Config) checkAndSetDefaults() error {
	if c.Binary == "" || c.DataDir == "" {
		return errors.New("shadowload: Binary and DataDir are required")
	}
	switch c.Engine {
	case "":
		c.Engine = "embedded"
	case "embedded":
	case "redis":
		if c.RedisAddr == "" {
			return errors.New("shadowload: the redis engine needs RedisAddr")
		}
	default:
		return fmt.Errorf("shadowload: unknown engine %q", c.Engine)
	}
	if c.Devices < 0 || c.Window < 0 || c.Updates < 0 || c.Timeout < 0 {
		return errors.New("shadowload: negative Devices, Window, Updates or Timeout")
	}
	if c.Devices == 0 {
		c.Devices = 100
	}
	if c.Window == 0 {
		c.Window = 1
	}
	if c.Updates == 0 {
		c.Updates = 20000
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Minute
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return nil
}

// Result is what a run measured. Only the update phase is timed: starting
// the server, provisioning and connecting are not.
type Result struct {
	Engine           string
	Devices, Window  int
	Sent, Accepted   int
	Rejected         int // answered on update/rejected
	Elapsed          time.Duration
	UpdatesPerSecond float64 // answered (accepted or rejected) per second
	P50, P99, Max    time.Duration
	// ServerCPU and LoadCPU are user+system CPU time of the server process
	// and of this (the generator's) process during the update phase.
	ServerCPU, LoadCPU time.Duration
	// Wrong counts devices whose final shadow version differs from the
	// updates accepted for it (with Verify; must be 0).
	Wrong int
}

// ServerCPUPerUpdate is the server's CPU time per answered update.
func (r Result) ServerCPUPerUpdate() time.Duration { return per(r.ServerCPU, r.Sent) }

// LoadCPUPerUpdate is the generator's CPU time per answered update.
func (r Result) LoadCPUPerUpdate() time.Duration { return per(r.LoadCPU, r.Sent) }

func per(d time.Duration, n int) time.Duration {
	if n == 0 {
		return 0
	}
	return d / time.Duration(n)
}

func (r Result) String() string {
	return fmt.Sprintf("%s %dx%d: %d updates (%d rejected) in %s = %.0f/s; round trip p50 %s p99 %s max %s; CPU/update server %s, generator %s",
		r.Engine, r.Devices, r.Window, r.Sent, r.Rejected, r.Elapsed.Round(time.Millisecond), r.UpdatesPerSecond,
		r.P50.Round(10*time.Microsecond), r.P99.Round(10*time.Microsecond), r.Max.Round(10*time.Microsecond),
		r.ServerCPUPerUpdate().Round(time.Microsecond), r.LoadCPUPerUpdate().Round(time.Microsecond))
}

// Build compiles the lastmile server from the module that contains dir
// (any directory of this repository) into out.
func Build(ctx context.Context, moduleDir, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/lastmile") //nolint:gosec // G204: the caller's output path, one argument, no shell
	cmd.Dir = moduleDir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/lastmile: %w\n%s", err, b)
	}
	return nil
}

// ModuleRoot returns the directory holding go.mod above dir.
func ModuleRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", errors.New("shadowload: no go.mod above the working directory")
		}
		dir = up
	}
}

// Run starts the server, runs the scenario and stops the server.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.checkAndSetDefaults(); err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	srv, err := startServer(ctx, cfg)
	if err != nil {
		return Result{}, err
	}
	defer srv.stop()
	return run(ctx, cfg, srv)
}

// server is the running lastmile process.
type server struct {
	cmd    *exec.Cmd
	exited chan struct{}

	mu    sync.Mutex
	log   bytes.Buffer
	addrs map[string]string
	token string
}

var bootstrapRe = regexp.MustCompile(`export LASTMILE_TOKEN=(lmt_[a-z0-9]+_[A-Za-z0-9_-]+)`)

func startServer(ctx context.Context, cfg Config) (*server, error) {
	args := []string{"serve", "--data-dir", cfg.DataDir, "--node-name", "shadowload",
		"--mqtt-addr", "127.0.0.1:0", "--ws-addr", "", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--log-format", "json", "--log-level", "info", "--store", cfg.Engine}
	if cfg.Engine == "redis" {
		args = append(args, "--redis-addr", cfg.RedisAddr)
	}
	args = append(args, cfg.Args...)
	s := &server{exited: make(chan struct{})}
	// Not CommandContext: stop() ends it, and waits.
	s.cmd = exec.Command(cfg.Binary, args...) //nolint:gosec // G204: the binary the caller built and asked to measure; no shell
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LASTMILE_") {
			s.cmd.Env = append(s.cmd.Env, kv)
		}
	}
	s.cmd.Env = append(s.cmd.Env, cfg.Env...)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go s.read(stderr)
	for {
		s.mu.Lock()
		ready := s.addrs != nil && s.token != ""
		s.mu.Unlock()
		if ready {
			return s, nil
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("lastmile exited before listening:\n%s", s.logText())
		case <-ctx.Done():
			s.stop()
			return nil, fmt.Errorf("lastmile did not listen: %w\n%s", ctx.Err(), s.logText())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *server) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		s.mu.Lock()
		if s.log.Len() < 1<<20 {
			s.log.WriteString(line + "\n")
		}
		if m := bootstrapRe.FindStringSubmatch(line); m != nil {
			s.token = m[1]
		}
		var rec map[string]any
		if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "listening" {
			s.addrs = map[string]string{}
			for _, k := range []string{"mqtt", "http"} {
				if v, ok := rec[k].(string); ok {
					s.addrs[k] = v
				}
			}
		}
		s.mu.Unlock()
	}
	_ = s.cmd.Wait()
	close(s.exited)
}

func (s *server) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

func (s *server) addr(k string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrs[k]
}

// stop asks the server to shut down (SIGTERM), then kills it after 20s.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// cpu returns the process's user+system CPU time from /proc/<pid>/stat.
func (s *server) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// parseStatCPU reads utime+stime (fields 14 and 15) of a /proc/<pid>/stat
// line. The command name (field 2) may hold spaces and parentheses, so the
// fields are counted after its last ')'.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("shadowload: malformed /proc stat: no ')'")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("shadowload: malformed /proc stat: %d fields after the name", len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("shadowload: malformed /proc stat: utime %q stime %q", f[11], f[12])
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// api calls the REST API with the bootstrap token.
func (s *server) api(ctx context.Context, method, path, body string, out any) error {
	s.mu.Lock()
	tok := s.token
	s.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+s.addr("http")+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

type device struct {
	id   string
	c    *paho.Client
	slot chan struct{}

	mu       sync.Mutex
	sent     map[string]time.Time
	accepted int
}

type collector struct {
	mu        sync.Mutex
	latencies []time.Duration
	answered  atomic.Int64
	rejected  atomic.Int64
	total     int64
	finished  chan struct{}
}

func run(ctx context.Context, cfg Config, srv *server) (Result, error) {
	col := &collector{latencies: make([]time.Duration, 0, cfg.Updates), total: int64(cfg.Updates), finished: make(chan struct{})}
	devs := make([]*device, cfg.Devices)
	cfg.Logf("provisioning and connecting %d devices", cfg.Devices)
	for i := range devs {
		d, err := connect(ctx, srv, fmt.Sprintf("load-%05d", i), cfg.Window, col)
		if err != nil {
			return Result{}, err
		}
		devs[i] = d
	}
	defer func() {
		for _, d := range devs {
			if d != nil {
				_ = d.c.Disconnect(&paho.Disconnect{})
			}
		}
	}()

	cpu0, err := srv.cpu()
	if err != nil {
		return Result{}, err
	}
	self0 := selfCPU()
	start := time.Now()
	var next atomic.Int64
	errc := make(chan error, len(devs))
	var wg sync.WaitGroup
	for _, d := range devs {
		wg.Go(func() {
			if err := d.send(ctx, &next, int64(cfg.Updates)); err != nil {
				errc <- err
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errc:
		return Result{}, err
	default:
	}
	select {
	case <-col.finished:
	case <-ctx.Done():
		return Result{}, fmt.Errorf("only %d of %d updates answered: %w", col.answered.Load(), cfg.Updates, ctx.Err())
	}
	elapsed := time.Since(start)
	cpu1, err := srv.cpu()
	if err != nil {
		return Result{}, err
	}
	res := Result{Engine: cfg.Engine, Devices: cfg.Devices, Window: cfg.Window, Sent: cfg.Updates,
		Rejected: int(col.rejected.Load()), Elapsed: elapsed, ServerCPU: cpu1 - cpu0, LoadCPU: selfCPU() - self0}
	res.Accepted = res.Sent - res.Rejected
	res.UpdatesPerSecond = float64(res.Sent) / elapsed.Seconds()
	lat := col.latencies
	slices.Sort(lat)
	if n := len(lat); n > 0 {
		res.P50, res.P99, res.Max = lat[(n-1)/2], lat[(n-1)*99/100], lat[n-1]
	}
	if cfg.Verify {
		for _, d := range devs {
			var out map[string]any
			want := d.accepted
			if want == 0 {
				continue
			}
			if err := srv.api(ctx, "GET", "/v1/devices/"+d.id+"/shadow", "", &out); err != nil {
				return res, err
			}
			if got := fmt.Sprint(out["version"]); got != strconv.Itoa(want) {
				cfg.Logf("device %s: shadow version %s after %d accepted updates", d.id, got, want)
				res.Wrong++
			}
		}
	}
	return res, nil
}

func connect(ctx context.Context, srv *server, id string, window int, col *collector) (*device, error) {
	var created struct {
		Secret string `json:"secret"`
	}
	if err := srv.api(ctx, "POST", "/v1/devices", `{"device":{"id":"`+id+`"},"generate_secret":true}`, &created); err != nil {
		return nil, fmt.Errorf("provision %s: %w", id, err)
	}
	d := &device{id: id, sent: map[string]time.Time{}, slot: make(chan struct{}, window)}
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", srv.addr("mqtt"))
	if err != nil {
		return nil, err
	}
	accepted := "$dm/" + id + "/shadow/update/accepted"
	d.c = paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) {
			tok := tokenOf(pr.Packet.Payload)
			ok := pr.Packet.Topic == accepted
			d.mu.Lock()
			t0, found := d.sent[tok]
			delete(d.sent, tok)
			if found && ok {
				d.accepted++
			}
			d.mu.Unlock()
			if !found {
				return true, nil
			}
			lat := time.Since(t0)
			if !ok {
				col.rejected.Add(1)
			}
			col.mu.Lock()
			col.latencies = append(col.latencies, lat)
			col.mu.Unlock()
			<-d.slot
			if col.answered.Add(1) == col.total {
				close(col.finished)
			}
			return true, nil
		},
	}})
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := d.c.Connect(cctx, &paho.Connect{ClientID: id, Username: id, UsernameFlag: true, Password: []byte(created.Secret), PasswordFlag: true, CleanStart: true, KeepAlive: 60}); err != nil {
		return nil, fmt.Errorf("connect %s: %w", id, err)
	}
	if _, err := d.c.Subscribe(cctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: accepted, QoS: 0}, {Topic: "$dm/" + id + "/shadow/update/rejected", QoS: 0}}}); err != nil {
		_ = d.c.Disconnect(&paho.Disconnect{})
		return nil, fmt.Errorf("subscribe %s: %w", id, err)
	}
	return d, nil
}

// send publishes updates, at most d's window unanswered, until the run's
// count is reached.
func (d *device) send(ctx context.Context, next *atomic.Int64, total int64) error {
	topic := "$dm/" + d.id + "/shadow/update"
	for {
		n := next.Add(1)
		if n > total {
			return nil
		}
		select {
		case d.slot <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		tok := strconv.FormatInt(n, 10)
		payload := []byte(`{"state":{"reported":{"seq":` + tok + `,"temp":21.5,"fw":{"version":"2.1.0"}}},"clientToken":"` + tok + `"}`)
		d.mu.Lock()
		d.sent[tok] = time.Now()
		d.mu.Unlock()
		if _, err := d.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload}); err != nil {
			return fmt.Errorf("publish %s: %w", d.id, err)
		}
	}
}

// tokenOf extracts "clientToken":"..." without decoding the JSON, to keep
// the generator cheap.
func tokenOf(p []byte) string {
	const key = `"clientToken":"`
	i := bytes.Index(p, []byte(key))
	if i < 0 {
		return ""
	}
	p = p[i+len(key):]
	if j := bytes.IndexByte(p, '"'); j >= 0 {
		return string(p[:j])
	}
	return ""
}
