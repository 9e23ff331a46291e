package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/lastmile-dm/lastmile/tunnel/snmprelay/executor"
)

func init() {
	Register(Scenario{
		Name:         "snmp",
		Help:         "lastmile only. The harness starts snmpd on loopback; device dev-00000 runs the agent's SNMP executor (paho MQTT 5 client) in front of it. SNMP v2c GET round trips p50/p99 through lastmile's SNMP proxy (UDP, community bench@dev-00000) and straight to snmpd, -duration each.",
		Devices:      func(Params) int { return 1 },
		Run:          runSNMP,
		LastmileOnly: true,
	})
}

// maxGets bounds a GET phase in count as well as in time.
const maxGets = 100000

// snmpdConf answers v2c reads for community public from loopback.
const snmpdConf = "rocommunity public 127.0.0.1\nsysLocation bench-rack\n"

// SNMPDBinary is the snmpd the snmp scenario starts.
var SNMPDBinary = "/usr/sbin/snmpd"

func runSNMP(ctx context.Context, env Env, p Params) (Result, error) {
	r := Result{Scenario: "snmp", Target: env.Target.Name()}
	l, ok := env.Target.(*Lastmile)
	if !ok {
		return r, ErrNotApplicable
	}
	if p.Duration <= 0 {
		return r, errors.New("snmp: -duration must be positive")
	}
	snmpd, stop, err := startSNMPD(ctx)
	if err != nil {
		return r, err
	}
	defer stop()
	id := DeviceID(0)
	dev, err := dialDevice(ctx, l.Addr(), id, l.Creds().DevicePassword[id])
	if err != nil {
		return r, err
	}
	defer dev.close()
	ex, err := executor.New(executor.Config{DeviceID: id, PubSub: dev, Target: snmpd, Community: "public",
		Timeout: 2 * time.Second, Retries: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return r, err
	}
	if err := ex.Start(); err != nil {
		return r, err
	}
	defer func() { _ = ex.Close() }()
	l.mu.Lock()
	proxyAddr := l.snmpAddr
	l.mu.Unlock()

	// The device's subscriptions reach the broker asynchronously: wait
	// (bounded) until a GET through the proxy is answered.
	via, err := snmpClient(proxyAddr, SNMPCommunity+"@"+id)
	if err != nil {
		return r, err
	}
	defer func() { _ = via.Conn.Close() }()
	var last error
	if !waitUntil(15*time.Second, func() bool { last = snmpGet(via); return last == nil }) {
		return r, fmt.Errorf("snmp: no answer through the proxy on %s: %w", proxyAddr, last)
	}
	direct, err := snmpClient(snmpd, "public")
	if err != nil {
		return r, err
	}
	defer func() { _ = direct.Conn.Close() }()

	dLat, err := gets(ctx, direct, p.Duration)
	if err != nil {
		return r, fmt.Errorf("direct: %w", err)
	}
	m := startCPU(l.PID())
	pLat, err := gets(ctx, via, p.Duration)
	bcpu, _, _ := m.stop()
	if err != nil {
		return r, fmt.Errorf("through the proxy: %w", err)
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	q := func(l []time.Duration, p float64) time.Duration { return l[int(p*float64(len(l)-1))] }
	r.add("get_proxy_p50", "ms", ms(q(pLat, 0.5)), false)
	r.add("get_proxy_p99", "ms", ms(q(pLat, 0.99)), false)
	r.add("get_direct_p50", "ms", ms(q(dLat, 0.5)), false)
	r.add("get_direct_p99", "ms", ms(q(dLat, 0.99)), false)
	r.add("get_added_p50", "ms", ms(q(pLat, 0.5)-q(dLat, 0.5)), false)
	r.add("get_proxy/direct_p50", "", float64(q(pLat, 0.5))/float64(q(dLat, 0.5)), false)
	r.add("server_cpu_per_get", "us", float64(bcpu.Microseconds())/float64(len(pLat)), false)
	r.add("gets_proxy", "", float64(len(pLat)), true)
	return r, nil
}

func snmpClient(addr, community string) (*gosnmp.GoSNMP, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, err
	}
	c := &gosnmp.GoSNMP{Target: host, Port: uint16(n), Community: community, Version: gosnmp.Version2c,
		Timeout: 3 * time.Second, Retries: 0}
	if err := c.Connect(); err != nil {
		return nil, err
	}
	return c, nil
}

// snmpGet reads sysLocation.0 and checks the answer.
func snmpGet(c *gosnmp.GoSNMP) error {
	res, err := c.Get([]string{"1.3.6.1.2.1.1.6.0"})
	if err != nil {
		return err
	}
	if len(res.Variables) != 1 || res.Variables[0].Type != gosnmp.OctetString {
		return fmt.Errorf("unexpected answer %+v", res.Variables)
	}
	return nil
}

// gets runs GETs one after the other for d or maxGets; it returns the
// sorted round trips.
func gets(ctx context.Context, c *gosnmp.GoSNMP, d time.Duration) ([]time.Duration, error) {
	var lat []time.Duration
	start := time.Now()
	for time.Since(start) < d && len(lat) < maxGets && ctx.Err() == nil {
		t0 := time.Now()
		if err := snmpGet(c); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(t0))
	}
	if len(lat) == 0 {
		return nil, errors.New("no GET completed")
	}
	slices.Sort(lat)
	return lat, ctx.Err()
}

// startSNMPD runs snmpd on a free loopback UDP port until stop.
func startSNMPD(ctx context.Context) (addr string, stop func(), err error) {
	if _, err := os.Stat(SNMPDBinary); err != nil {
		return "", nil, fmt.Errorf("snmpd: %w (apt-get install snmpd)", err)
	}
	dir, err := os.MkdirTemp("", "lmbench-snmpd")
	if err != nil {
		return "", nil, err
	}
	path := filepath.Join(dir, "snmpd.conf")
	if err := os.WriteFile(path, []byte(snmpdConf), 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return "", nil, err
	}
	port, err := freeUDPPort()
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", nil, err
	}
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(SNMPDBinary, "-f", "-Lo", "-C", "-c", path, "-M", "/dev/null", "-p", filepath.Join(dir, "pid"), "udp:"+addr) //nolint:gosec // G204: the installed snmpd
	cmd.Env = append(os.Environ(), "SNMP_PERSISTENT_DIR="+dir, "MIBS=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return "", nil, err
	}
	stop = func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = os.RemoveAll(dir)
	}
	c, err := snmpClient(addr, "public")
	if err != nil {
		stop()
		return "", nil, err
	}
	defer func() { _ = c.Conn.Close() }()
	c.Timeout = 200 * time.Millisecond
	if !waitUntil(15*time.Second, func() bool { return ctx.Err() == nil && snmpGet(c) == nil }) {
		stop()
		return "", nil, fmt.Errorf("snmpd on %s never answered", addr)
	}
	return addr, stop, nil
}
