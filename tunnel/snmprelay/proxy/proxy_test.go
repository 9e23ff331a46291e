package proxy_test

import (
	"context"
	"errors"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-dm/lastmile/dm/topic"
	"github.com/lastmile-dm/lastmile/internal/snmptest"
	"github.com/lastmile-dm/lastmile/internal/tunneltest"
	"github.com/lastmile-dm/lastmile/tunnel/snmprelay"
	"github.com/lastmile-dm/lastmile/tunnel/snmprelay/executor"
	"github.com/lastmile-dm/lastmile/tunnel/snmprelay/proxy"
)

// snmpdConf: public reads, private writes; sysContact is not set here, so
// it is writable.
const snmpdConf = "rocommunity public 127.0.0.1\nrwcommunity private 127.0.0.1\nsysLocation lab-rack-7\n"

type env struct {
	snmpd string // direct address of the target
	proxy string // the proxy's UDP address
	p     *proxy.Proxy
	traps chan proxy.DeviceTrap
}

// setup runs a real snmpd behind an executor on a real MQTT client of
// device gw1, and the proxy on the broker's platform messaging.
func setup(t testing.TB, receivers ...string) *env {
	t.Helper()
	e := &env{snmpd: snmptest.SNMPD(t, snmpdConf, "public"), traps: make(chan proxy.DeviceTrap, 16)}
	b := tunneltest.Broker(t)
	ex, err := executor.New(executor.Config{DeviceID: "gw1", PubSub: tunneltest.Connect(t, b, "gw1"), Target: e.snmpd,
		Community: "public", WriteCommunity: "private", Timeout: 2 * time.Second, Retries: 1, Logger: tunneltest.Quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := ex.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ex.Close() })
	e.p, err = proxy.New(proxy.Config{PubSub: tunneltest.Platform{B: b}, Connected: b.Connected,
		ReadCommunity: "oss-ro", WriteCommunity: "oss-rw", Timeout: 3 * time.Second, TrapReceivers: receivers,
		TrapSink:   proxy.TrapSinkFunc(func(t proxy.DeviceTrap) { e.traps <- t }),
		Registerer: prometheus.NewRegistry(), Logger: tunneltest.Quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.p.Close)
	a, err := e.p.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.proxy = a.String()
	return e
}

// dynamic matches values that change between two reads (uptime, traffic
// counters, which the tools' own packets move).
var dynamic = regexp.MustCompile(`(Timeticks|Counter32|Counter64|Gauge32): .*`)

// same runs a tool against the proxy and against snmpd directly and
// wants the same output and exit status.
func (e *env) same(t *testing.T, tool string, args ...string) string {
	t.Helper()
	var viaArgs, directArgs []string
	for _, a := range args {
		switch a {
		case "@ro":
			viaArgs, directArgs = append(viaArgs, "-c", "oss-ro@gw1"), append(directArgs, "-c", "public")
		case "@rw":
			viaArgs, directArgs = append(viaArgs, "-c", "oss-rw@gw1"), append(directArgs, "-c", "private")
		case "@addr":
			viaArgs, directArgs = append(viaArgs, e.proxy), append(directArgs, e.snmpd)
		default:
			viaArgs, directArgs = append(viaArgs, a), append(directArgs, a)
		}
	}
	direct, dok := snmptest.Tool(t, tool, directArgs...)
	via, vok := snmptest.Tool(t, tool, viaArgs...)
	// Error messages name the address asked.
	via = dynamic.ReplaceAllString(strings.ReplaceAll(via, e.proxy, "ADDR"), "$1: N")
	direct = dynamic.ReplaceAllString(strings.ReplaceAll(direct, e.snmpd, "ADDR"), "$1: N")
	if via != direct || vok != dok {
		t.Fatalf("%s %v:\nvia proxy (ok %v):\n%s\ndirect (ok %v):\n%s", tool, args, vok, via, dok, direct)
	}
	return via
}

// TestNetSNMPToolsThroughProxy: snmpget, snmpwalk, snmpbulkwalk and snmpset
// against the proxy get what snmpd answers directly, errors included.
func TestNetSNMPToolsThroughProxy(t *testing.T) {
	t.Parallel()
	e := setup(t)
	out := e.same(t, "snmpget", "-v2c", "@ro", "@addr", "1.3.6.1.2.1.1.6.0", "1.3.6.1.2.1.1.1.0")
	if !strings.Contains(out, `.1.3.6.1.2.1.1.6.0 = STRING: "lab-rack-7"`) {
		t.Fatalf("snmpget: %s", out)
	}
	// noSuchObject, noSuchInstance.
	out = e.same(t, "snmpget", "-v2c", "@ro", "@addr", "1.3.6.1.2.1.1.99.0", "1.3.6.1.2.1.1.6.1")
	if !strings.Contains(out, "No Such Object") || !strings.Contains(out, "No Such Instance") {
		t.Fatalf("snmpget exceptions: %s", out)
	}
	// SNMPv1: noSuchName, with the index.
	out = e.same(t, "snmpget", "-v1", "@ro", "@addr", "1.3.6.1.2.1.1.6.0", "1.3.6.1.2.1.1.99.0")
	if !strings.Contains(out, "noSuchName") {
		t.Fatalf("v1 snmpget: %s", out)
	}
	e.same(t, "snmpgetnext", "-v1", "@ro", "@addr", "1.3.6.1.2.1.1.6.0")
	out = e.same(t, "snmpwalk", "-v2c", "@ro", "@addr", "1.3.6.1.2.1.1")
	if n := strings.Count(out, "\n"); n < 8 {
		t.Fatalf("snmpwalk system: %d lines:\n%s", n, out)
	}
	e.same(t, "snmpwalk", "-v1", "@ro", "@addr", "1.3.6.1.2.1.1.9")
	// endOfMibView at the end of the tree.
	out = e.same(t, "snmpget", "-v2c", "@ro", "@addr", "1.3.6.1.2.1.1.1.0")
	if !strings.Contains(out, "STRING") {
		t.Fatalf("sysDescr: %s", out)
	}
	out = e.same(t, "snmpbulkget", "-v2c", "@ro", "-Cn0", "-Cr3", "@addr", "2.9")
	if !strings.Contains(out, "No more variables left in this MIB View") {
		t.Fatalf("snmpbulkget past the end: %s", out)
	}
	out = e.same(t, "snmpbulkwalk", "-v2c", "@ro", "-Cr25", "@addr", "1.3.6.1.2.1.2")
	if !strings.Contains(out, ".1.3.6.1.2.1.2.2.1.2.1 = STRING: \"lo\"") {
		t.Fatalf("snmpbulkwalk ifTable: %s", out)
	}

	// SET through the proxy with the write community; read it back
	// directly from snmpd.
	out, ok := snmptest.Tool(t, "snmpset", "-v2c", "-c", "oss-rw@gw1", e.proxy, "1.3.6.1.2.1.1.4.0", "s", "noc@example.net")
	if !ok || !strings.Contains(out, `"noc@example.net"`) {
		t.Fatalf("snmpset via proxy: %s", out)
	}
	out, _ = snmptest.Tool(t, "snmpget", "-v2c", "-c", "public", e.snmpd, "1.3.6.1.2.1.1.4.0")
	if !strings.Contains(out, `"noc@example.net"`) {
		t.Fatalf("snmpd did not take the SET: %s", out)
	}
	// A SET snmpd refuses (wrong type) comes back as snmpd's error.
	e.same(t, "snmpset", "-v2c", "@rw", "@addr", "1.3.6.1.2.1.1.4.0", "i", "5")
	e.same(t, "snmpset", "-v2c", "@rw", "@addr", "1.3.6.1.2.1.1.3.0", "t", "5")
}

// TestProxyDropsWhatAnAgentWouldNot: a wrong community, a SET with the
// read community, an unknown device and no device in the community get no
// answer (the OSS times out), as from a real agent.
func TestProxyDropsWhatAnAgentWouldNot(t *testing.T) {
	t.Parallel()
	e := setup(t)
	for _, c := range [][]string{
		{"snmpget", "-c", "wrong@gw1", e.proxy, "1.3.6.1.2.1.1.6.0"},
		{"snmpget", "-c", "oss-ro@nodev", e.proxy, "1.3.6.1.2.1.1.6.0"},
		{"snmpget", "-c", "oss-ro", e.proxy, "1.3.6.1.2.1.1.6.0"},
		{"snmpset", "-c", "oss-ro@gw1", e.proxy, "1.3.6.1.2.1.1.4.0", "s", "x"},
		{"snmpget", "-v3", "-l", "noAuthNoPriv", "-u", "u", "-n", "gw1", e.proxy, "1.3.6.1.2.1.1.6.0"},
	} {
		args := append([]string{"-v2c", "-t", "0.3", "-r", "0"}, c[1:]...)
		if c[1] == "-v3" {
			args = append([]string{"-t", "0.3", "-r", "0"}, c[1:]...)
		}
		out, ok := snmptest.Tool(t, c[0], args...)
		if ok || !strings.Contains(out, "Timeout") {
			t.Errorf("%v: ok %v: %s", c, ok, out)
		}
	}
	// The read community reads.
	if out, ok := snmptest.Tool(t, "snmpget", "-v2c", "-c", "oss-ro@gw1", e.proxy, "1.3.6.1.2.1.1.6.0"); !ok {
		t.Fatalf("read: %s", out)
	}
}

// TestAPI: Get, Walk and Set as SnmpService calls them, and their errors.
func TestAPI(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	r, err := e.p.Get(ctx, "gw1", []string{"1.3.6.1.2.1.1.6.0"})
	if err != nil || len(r.Vars) != 1 || string(r.Vars[0].Bytes) != "lab-rack-7" {
		t.Fatalf("Get: %+v %v", r, err)
	}
	var walked []string
	if err := e.p.Walk(ctx, "gw1", "1.3.6.1.2.1.1", func(v snmprelay.Var) error { walked = append(walked, v.OID); return nil }); err != nil {
		t.Fatal(err)
	}
	direct, _ := snmptest.Tool(t, "snmpwalk", "-v2c", "-c", "public", e.snmpd, "1.3.6.1.2.1.1")
	var want []string
	for _, l := range strings.Split(direct, "\n") {
		want = append(want, strings.SplitN(l, " ", 2)[0])
	}
	if !slices.Equal(walked, want) {
		t.Fatalf("Walk: %v\nwant %v", walked, want)
	}
	r, err = e.p.Set(ctx, "gw1", []snmprelay.Var{{OID: "1.3.6.1.2.1.1.4.0", Type: byte(gosnmp.OctetString), Bytes: []byte("api")}})
	if err != nil || r.ErrorStatus != 0 {
		t.Fatalf("Set: %+v %v", r, err)
	}
	if _, err := e.p.Get(ctx, "nodev", []string{"1.3.6.1.2.1.1.6.0"}); !errors.Is(err, proxy.ErrDeviceOffline) {
		t.Fatalf("offline device: %v", err)
	}
	if _, err := e.p.Get(ctx, "gw1", []string{"sysLocation.0"}); !errors.Is(err, proxy.ErrInvalid) {
		t.Fatalf("bad OID: %v", err)
	}
	if _, err := e.p.Get(ctx, "a/b", []string{"1.3.6"}); !errors.Is(err, proxy.ErrInvalid) {
		t.Fatalf("bad device: %v", err)
	}
}

// TestTargetDown: when the device's SNMP target does not answer, the API
// says so and the OSS gets no answer.
func TestTargetDown(t *testing.T) {
	t.Parallel()
	b := tunneltest.Broker(t)
	dead := snmptest.FreeUDP(t)
	ex, err := executor.New(executor.Config{DeviceID: "gw1", PubSub: tunneltest.Connect(t, b, "gw1"), Target: dead,
		Community: "public", Timeout: 200 * time.Millisecond, Logger: tunneltest.Quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := ex.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ex.Close() })
	p, err := proxy.New(proxy.Config{PubSub: tunneltest.Platform{B: b}, Connected: b.Connected, ReadCommunity: "ro",
		Timeout: 3 * time.Second, Logger: tunneltest.Quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if _, err := p.Get(context.Background(), "gw1", []string{"1.3.6.1.2.1.1.6.0"}); !errors.Is(err, proxy.ErrTargetUnreachable) {
		t.Fatalf("Get with the target down: %v", err)
	}
	a, err := p.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if out, ok := snmptest.Tool(t, "snmpget", "-v2c", "-t", "1", "-r", "0", "-c", "ro@gw1", a.String(), "1.3.6.1.2.1.1.6.0"); ok || !strings.Contains(out, "Timeout") {
		t.Fatalf("OSS with the target down: %s", out)
	}
}

// TestTrapForwarding: snmptrap sent to the device's trap port reaches the
// OSS's trap receiver with its varbinds and the device ID, and the sink.
func TestTrapForwarding(t *testing.T) {
	t.Parallel()
	type got struct {
		vars []gosnmp.SnmpPDU
	}
	recv := make(chan got, 4)
	tl := gosnmp.NewTrapListener()
	tl.Params = &gosnmp.GoSNMP{Version: gosnmp.Version2c, Community: "oss-traps"}
	tl.OnNewTrap = func(p *gosnmp.SnmpPacket, _ *net.UDPAddr) {
		if p.Community == "oss-traps" {
			recv <- got{p.Variables}
		}
	}
	oss := snmptest.FreeUDP(t)
	errc := make(chan error, 1)
	go func() { errc <- tl.Listen(oss) }()
	select {
	case <-tl.Listening():
	case err := <-errc:
		t.Fatal(err)
	}
	t.Cleanup(tl.Close)

	b := tunneltest.Broker(t)
	dev := tunneltest.Connect(t, b, "gw1")
	var mu sync.Mutex
	trapPort := snmptest.FreeUDP(t)
	r, err := executor.ListenTraps(executor.TrapConfig{Listen: trapPort, Community: "public", Logger: tunneltest.Quiet,
		Sink: func(tr snmprelay.Trap) error {
			mu.Lock()
			defer mu.Unlock()
			body, _ := snmprelay.Encode(tr)
			return dev.Publish(context.Background(), topic.SNMPTrapTopic("gw1"), 1, body)
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	sink := make(chan proxy.DeviceTrap, 4)
	p, err := proxy.New(proxy.Config{PubSub: tunneltest.Platform{B: b}, TrapReceivers: []string{oss}, TrapCommunity: "oss-traps",
		TrapSink: proxy.TrapSinkFunc(func(t proxy.DeviceTrap) { sink <- t }), Logger: tunneltest.Quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)

	// A wrong community is dropped at the device.
	if out, ok := snmptest.Tool(t, "snmptrap", "-v2c", "-c", "wrong", trapPort, "", "1.3.6.1.6.3.1.1.5.3"); !ok {
		t.Fatal(out)
	}
	if out, ok := snmptest.Tool(t, "snmptrap", "-v2c", "-c", "public", trapPort, "", "1.3.6.1.6.3.1.1.5.4",
		"1.3.6.1.2.1.2.2.1.1.2", "i", "2", "1.3.6.1.2.1.1.5.0", "s", "edge-7"); !ok {
		t.Fatal(out)
	}
	var g got
	select {
	case g = <-recv:
	case <-time.After(20 * time.Second):
		t.Fatal("no trap at the OSS receiver")
	}
	find := func(oid string) *gosnmp.SnmpPDU {
		for i := range g.vars {
			if strings.TrimPrefix(g.vars[i].Name, ".") == oid {
				return &g.vars[i]
			}
		}
		return nil
	}
	if v := find("1.3.6.1.6.3.1.1.4.1.0"); v == nil || strings.TrimPrefix(v.Value.(string), ".") != "1.3.6.1.6.3.1.1.5.4" {
		t.Fatalf("snmpTrapOID: %+v", g.vars)
	}
	if v := find("1.3.6.1.2.1.2.2.1.1.2"); v == nil || v.Value.(int) != 2 {
		t.Fatalf("ifIndex varbind: %+v", g.vars)
	}
	if v := find("1.3.6.1.2.1.1.5.0"); v == nil || string(v.Value.([]byte)) != "edge-7" {
		t.Fatalf("sysName varbind: %+v", g.vars)
	}
	if v := find(proxy.DefaultTrapDeviceOID); v == nil || string(v.Value.([]byte)) != "gw1" {
		t.Fatalf("device ID varbind: %+v", g.vars)
	}
	if s := <-sink; s.DeviceID != "gw1" || len(s.Vars) != 4 {
		t.Fatalf("sink: %+v", s)
	}
	select {
	case extra := <-recv:
		t.Fatalf("the wrong-community trap was forwarded too: %+v", extra.vars)
	default:
	}
}

// TestSetRefusedByAgent: an agent without a write community answers SET
// with noAccess, which the OSS sees as such.
func TestSetRefusedByAgent(t *testing.T) {
	t.Parallel()
	snmpd := snmptest.SNMPD(t, snmpdConf, "public")
	b := tunneltest.Broker(t)
	ex, err := executor.New(executor.Config{DeviceID: "gw2", PubSub: tunneltest.Connect(t, b, "gw2"), Target: snmpd,
		Community: "public", Timeout: 2 * time.Second, Logger: tunneltest.Quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := ex.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ex.Close() })
	p, err := proxy.New(proxy.Config{PubSub: tunneltest.Platform{B: b}, Connected: b.Connected, WriteCommunity: "rw", Logger: tunneltest.Quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	a, err := p.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	out, ok := snmptest.Tool(t, "snmpset", "-v2c", "-c", "rw@gw2", a.String(), "1.3.6.1.2.1.1.4.0", "s", "x")
	if ok || !strings.Contains(out, "noAccess") {
		t.Fatalf("SET without a write community at the agent: %s", out)
	}
	// The write community reads too.
	if out, ok := snmptest.Tool(t, "snmpget", "-v2c", "-c", "rw@gw2", a.String(), "1.3.6.1.2.1.1.6.0"); !ok || !strings.Contains(out, "lab-rack-7") {
		t.Fatalf("read with the write community: %s", out)
	}
}
