package bench

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
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lastmile-dm/lastmile/internal/serveout"
)

// Target is a broker under test: a real process on loopback.
//
// Start runs a fresh process on the same data (devices provisioned before a
// restart stay provisioned); Stop ends it and waits. Provision creates the
// devices dev-00000 … and the application the scenarios use, through the
// broker's own means (lastmile: its REST API with a token; mosquitto: a
// password file and an ACL file), and is idempotent.
type Target interface {
	Name() string
	Start(ctx context.Context) error
	Stop() error
	Addr() string
	PID() int
	Provision(ctx context.Context, devices int) error
	Creds() *Creds
}

// Cluster is a target of several broker processes (lastmile nodes sharing
// one Redis): the connect scenario spreads its devices over Addrs and adds
// up the RSS and CPU of PIDs. Other scenarios use the first node only.
type Cluster interface {
	Addrs() []string
	PIDs() []int
}

// addrsOf returns the MQTT addresses of every broker process of t.
func addrsOf(t Target) []string {
	if c, ok := t.(Cluster); ok {
		return c.Addrs()
	}
	return []string{t.Addr()}
}

// pidsOf returns the process IDs of every broker process of t.
func pidsOf(t Target) []int {
	if c, ok := t.(Cluster); ok {
		return c.PIDs()
	}
	return []int{t.PID()}
}

var _ Cluster = (*Lastmile)(nil)

// Creds are what clients need to connect to a target.
type Creds struct {
	DevicePassword map[string]string
	AppUser        string
	AppPassword    string
	// AppClientID returns the client ID of the application's i-th
	// connection.
	AppClientID func(i int) string
}

// DeviceID names the i-th benchmark device.
func DeviceID(i int) string { return fmt.Sprintf("dev-%05d", i) }

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitDial polls until addr accepts TCP connections or ctx ends.
func waitDial(ctx context.Context, addr string, exited <-chan struct{}) error {
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", addr, ctx.Err())
		case <-exited:
			return errors.New("process exited before it listened")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// proc is a child process whose stderr is kept (the tail) for errors.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	mu     sync.Mutex
	tail   []string
	onLine func(string)
}

// startProc runs the broker binary the operator named.
//
//nolint:gosec // G204: the binary under test, chosen on the command line
func startProc(name string, args, env []string, onLine func(string)) (*proc, error) {
	p := &proc{cmd: exec.Command(name, args...), exited: make(chan struct{}), onLine: onLine}
	p.cmd.Env = append(cleanEnv(), env...)
	// The broker dies with the harness, however the harness ends.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p.cmd.Stdout = nil
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.tail = append(p.tail, line)
			if len(p.tail) > 50 {
				p.tail = p.tail[1:]
			}
			p.mu.Unlock()
			if p.onLine != nil {
				p.onLine(line)
			}
		}
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

// stop sends SIGTERM and waits; after 20 s it kills.
func (p *proc) stop() error {
	if p == nil {
		return nil
	}
	select {
	case <-p.exited:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	return nil
}

// cleanEnv drops LASTMILE_* variables of the caller's shell, so that the
// target runs on the harness's flags only.
func cleanEnv() []string {
	env := serveout.CleanEnv()
	if v := os.Getenv("LMBENCH_PPROF"); v != "" {
		env = append(env, "LASTMILE_DEBUG_PPROF_ADDR="+v)
	}
	return env
}

// Lastmile runs the real `lastmile serve` binary with every platform hook
// on (authentication, ACL, presence, session persistence, metrics) on a
// temporary data directory.
type Lastmile struct {
	Binary  string
	DataDir string
	Extra   []string // more serve flags, e.g. --store redis
	// Nodes is how many `lastmile serve` processes to run (default 1);
	// more than one needs the Redis store in Extra, which they share. The
	// connect scenario spreads over all of them (see Cluster).
	Nodes int

	p        *proc
	out      serveout.Watch
	more     []*lastmileNode // nodes 2..Nodes
	mu       sync.Mutex
	creds    *Creds
	snmpAddr string
}

// SNMPCommunity is the read community of lastmile's SNMP proxy in the
// bench ("bench@<device>" reaches a device).
const SNMPCommunity = "bench"

// freeUDPPort asks the kernel for a free loopback UDP port.
func freeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

func (l *Lastmile) Name() string { return "lastmile" }

func (l *Lastmile) Start(ctx context.Context) error {
	args := serveout.Args(l.DataDir, "bench", append([]string{"--log-level", "info"}, l.Extra...)...)
	l.out.Reset()
	// The SNMP proxy listens for the snmp scenario, with read community
	// SNMPCommunity; an idle UDP socket costs the other scenarios nothing.
	udp, err := freeUDPPort()
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.snmpAddr = fmt.Sprintf("127.0.0.1:%d", udp)
	l.mu.Unlock()
	env := []string{"LASTMILE_SNMP_LISTEN=" + l.snmpAddr, "LASTMILE_SNMP_READ_COMMUNITY=" + SNMPCommunity}
	p, err := startProc(l.Binary, args, env, l.out.Line)
	if err != nil {
		return err
	}
	l.p = p
	if err := waitListening(ctx, p, &l.out); err != nil {
		return err
	}
	l.more = nil
	for k := 1; k < l.Nodes; k++ {
		n := &lastmileNode{}
		args := serveout.Args(fmt.Sprintf("%s-node%d", l.DataDir, k), fmt.Sprintf("bench-%d", k),
			append([]string{"--log-level", "info"}, l.Extra...)...)
		if n.p, err = startProc(l.Binary, args, nil, n.out.Line); err != nil {
			_ = l.Stop()
			return err
		}
		l.more = append(l.more, n)
		if err := waitListening(ctx, n.p, &n.out); err != nil {
			_ = l.Stop()
			return fmt.Errorf("node %d: %w", k+1, err)
		}
	}
	return nil
}

// lastmileNode is a further node of a Lastmile cluster.
type lastmileNode struct {
	p   *proc
	out serveout.Watch
}

// waitListening waits until serve has logged the addresses it listens on.
func waitListening(ctx context.Context, p *proc, out *serveout.Watch) error {
	for {
		if out.Listening() {
			return nil
		}
		select {
		case <-ctx.Done():
			_ = p.stop()
			return fmt.Errorf("lastmile did not listen: %w\n%s", ctx.Err(), p.log())
		case <-p.exited:
			return fmt.Errorf("lastmile exited: %s", p.log())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop ends every node.
func (l *Lastmile) Stop() error {
	for _, n := range l.more {
		_ = n.p.stop()
	}
	return l.p.stop()
}

func (l *Lastmile) PID() int { return l.p.cmd.Process.Pid }

// Addrs returns the MQTT address of every node.
func (l *Lastmile) Addrs() []string {
	out := []string{l.Addr()}
	for _, n := range l.more {
		out = append(out, n.out.Addr("mqtt"))
	}
	return out
}

// PIDs returns the process ID of every node.
func (l *Lastmile) PIDs() []int {
	out := []int{l.PID()}
	for _, n := range l.more {
		out = append(out, n.p.cmd.Process.Pid)
	}
	return out
}

func (l *Lastmile) Creds() *Creds {
	return l.creds
}

func (l *Lastmile) Addr() string { return l.out.Addr("mqtt") }

// api calls the REST API with the bootstrap token.
func (l *Lastmile) api(ctx context.Context, method, path string, body any, out any) error {
	base, token := "http://"+l.out.Addr("http"), l.out.Token()
	if token == "" {
		return errors.New("no bootstrap token captured (data dir not fresh?)")
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// Provision creates the devices (generated secrets, as a fleet would use),
// a role allowing tele/# and bench/#, and the application "bench".
func (l *Lastmile) Provision(ctx context.Context, devices int) error {
	if l.creds == nil {
		l.creds = &Creds{DevicePassword: map[string]string{}, AppUser: "app:bench",
			AppClientID: func(i int) string { return fmt.Sprintf("app:bench:%d", i) }}
		role := map[string]any{"name": "bench", "rules": []map[string]string{
			{"action": "ACTION_ALL", "effect": "EFFECT_ALLOW", "filter": "tele/#"},
			{"action": "ACTION_ALL", "effect": "EFFECT_ALLOW", "filter": "bench/#"},
		}}
		if err := l.api(ctx, "PUT", "/v1/roles/bench", role, nil); err != nil {
			return fmt.Errorf("create role: %w", err)
		}
		var app struct {
			Secret string `json:"secret"`
		}
		if err := l.api(ctx, "POST", "/v1/applications", map[string]any{"application": map[string]any{"name": "bench", "role": "bench"}}, &app); err != nil {
			return fmt.Errorf("create application: %w", err)
		}
		l.creds.AppPassword = app.Secret
	}
	var missing []string
	for i := range devices {
		if _, ok := l.creds.DevicePassword[DeviceID(i)]; !ok {
			missing = append(missing, DeviceID(i))
		}
	}
	var mu sync.Mutex
	err := parallel(ctx, len(missing), 16, func(ctx context.Context, i int) error {
		var out struct {
			Secret string `json:"secret"`
		}
		id := missing[i]
		if err := l.api(ctx, "POST", "/v1/devices", map[string]any{"device": map[string]any{"id": id}, "generate_secret": true}, &out); err != nil {
			return err
		}
		mu.Lock()
		l.creds.DevicePassword[id] = out.Secret
		mu.Unlock()
		return nil
	})
	if err != nil {
		return fmt.Errorf("provision devices: %w", err)
	}
	return nil
}

// Mosquitto runs Debian's /usr/sbin/mosquitto configured like lastmile:
// no anonymous access, a password per device (mosquitto_passwd), an ACL
// confining each device to tele/<user>/# and $dm/<user>/#, an application
// user allowed tele/# and bench/#, persistence on, the same queue bound.
type Mosquitto struct {
	Binary string
	Dir    string

	p     *proc
	addr  string
	creds *Creds
	n     int
}

func (m *Mosquitto) Name() string  { return "mosquitto" }
func (m *Mosquitto) Stop() error   { return m.p.stop() }
func (m *Mosquitto) PID() int      { return m.p.cmd.Process.Pid }
func (m *Mosquitto) Addr() string  { return m.addr }
func (m *Mosquitto) Creds() *Creds { return m.creds }

func (m *Mosquitto) Start(ctx context.Context) error {
	p, addr, err := startOnFreePort(ctx, "mosquitto", func(port int) (*proc, error) {
		conf := filepath.Join(m.Dir, "mosquitto.conf")
		text := fmt.Sprintf(`listener %d 127.0.0.1
allow_anonymous false
password_file %s
acl_file %s
persistence true
persistence_location %s/
autosave_interval 1800
max_queued_messages 1000
max_inflight_messages 64
max_connections -1
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
`, port, filepath.Join(m.Dir, "passwd"), filepath.Join(m.Dir, "acl"), m.Dir)
		if os.Geteuid() == 0 {
			text += "user root\n"
		}
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			return nil, err
		}
		return startProc(m.Binary, []string{"-c", conf}, nil, nil)
	})
	if err != nil {
		return err
	}
	m.p, m.addr = p, addr
	return nil
}

// startOnFreePort starts a broker on a free loopback port and waits until
// it accepts connections, trying again on another port if the port was
// taken between asking for it and binding it.
func startOnFreePort(ctx context.Context, name string, start func(port int) (*proc, error)) (*proc, string, error) {
	var last error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, "", err
		}
		p, err := start(port)
		if err != nil {
			return nil, "", err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		last = waitDial(wctx, addr, p.exited)
		cancel()
		if last == nil {
			return p, addr, nil
		}
		_ = p.stop()
		last = fmt.Errorf("%s: %w\n%s", name, last, p.log())
	}
	return nil, "", last
}

// Provision writes the password file (hashed by mosquitto_passwd -U) and
// the ACL file; mosquitto reads them when it starts, so call it before
// Start.
func (m *Mosquitto) Provision(ctx context.Context, devices int) error {
	if m.creds != nil && devices <= m.n {
		return nil
	}
	m.creds = &Creds{DevicePassword: map[string]string{}, AppUser: "bench-app", AppPassword: "bench-app-secret-0123456789",
		AppClientID: func(i int) string { return fmt.Sprintf("bench-app-%d", i) }}
	var b strings.Builder
	for i := range devices {
		id := DeviceID(i)
		pw := "pw-" + id + "-0123456789abcdef"
		m.creds.DevicePassword[id] = pw
		fmt.Fprintf(&b, "%s:%s\n", id, pw)
	}
	fmt.Fprintf(&b, "%s:%s\n", m.creds.AppUser, m.creds.AppPassword)
	pw := filepath.Join(m.Dir, "passwd")
	if err := os.WriteFile(pw, []byte(b.String()), 0o600); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "mosquitto_passwd", "-U", pw).CombinedOutput(); err != nil { //nolint:gosec // G204: fixed tool, our temp file
		return fmt.Errorf("mosquitto_passwd -U: %w: %s", err, out)
	}
	acl := "pattern readwrite tele/%u/#\npattern readwrite $dm/%u/#\n\nuser " + m.creds.AppUser + "\ntopic readwrite tele/#\ntopic readwrite bench/#\n"
	if err := os.WriteFile(filepath.Join(m.Dir, "acl"), []byte(acl), 0o600); err != nil {
		return err
	}
	m.n = devices
	return nil
}

// parallel runs f(0..n-1) on at most width goroutines and returns the
// first error.
func parallel(ctx context.Context, n, width int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
		next  = make(chan int)
	)
	for range min(width, max(n, 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
loop:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break loop
		}
	}
	close(next)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}
