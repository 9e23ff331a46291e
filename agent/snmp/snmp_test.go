package snmp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"
)

// SNMPD starts a real snmpd on a free UDP port of 127.0.0.1 with the
// given configuration lines and returns its address.
func startSNMPD(t *testing.T, conf ...string) string {
	t.Helper()
	bin, err := exec.LookPath("snmpd")
	if err != nil {
		for _, p := range []string{"/usr/sbin/snmpd", "/usr/local/sbin/snmpd"} {
			if _, err := os.Stat(p); err == nil {
				bin = p
			}
		}
		if bin == "" {
			t.Skip("snmpd not installed (make test-deps)")
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "snmpd.conf")
	if err := os.WriteFile(path, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A free UDP port: bind, note, release.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	_ = pc.Close()
	cmd := exec.Command(bin, "-f", "-Lo", "-C", "-c", path, "-M", "/dev/null", "-p", filepath.Join(dir, "pid"), "udp:"+addr)
	cmd.Env = append(os.Environ(), "SNMP_PERSISTENT_DIR="+dir, "MIBS=")
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("snmpd log:\n%s", log.String())
		}
	})
	// Ready when it answers.
	p, err := New(Config{Target: addr, Community: "public", OIDs: []string{"1.3.6.1.2.1.1.3.0"}, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("snmpd exited:\n%s", log.String())
		default:
		}
		if _, err := p.Poll(context.Background()); err == nil {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("snmpd did not answer on %s", addr)
		}
	}
}

func TestPollRealSNMPD(t *testing.T) {
	t.Parallel()
	addr := startSNMPD(t, "rocommunity public 127.0.0.1", "sysLocation lab-rack-7", "sysContact noc@example.net")
	for _, version := range []string{"2c", "1"} {
		p, err := New(Config{Target: addr, Version: version, Community: "public", Timeout: 2 * time.Second,
			OIDs: []string{"1.3.6.1.2.1.1.6.0", ".1.3.6.1.2.1.1.4.0", "1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.1.2.0"}})
		if err != nil {
			t.Fatal(err)
		}
		res, err := p.Poll(context.Background())
		if err != nil {
			t.Fatalf("v%s: %v", version, err)
		}
		if len(res.Vars) != 4 {
			t.Fatalf("v%s: %d vars: %+v", version, len(res.Vars), res.Vars)
		}
		want := []struct{ oid, typ string }{{"1.3.6.1.2.1.1.6.0", "OctetString"}, {"1.3.6.1.2.1.1.4.0", "OctetString"}, {"1.3.6.1.2.1.1.3.0", "TimeTicks"}, {"1.3.6.1.2.1.1.2.0", "ObjectIdentifier"}}
		for i, w := range want {
			if res.Vars[i].OID != w.oid || res.Vars[i].Type != w.typ {
				t.Errorf("v%s var %d: %+v, want %s %s", version, i, res.Vars[i], w.oid, w.typ)
			}
		}
		if res.Vars[0].Value != "lab-rack-7" || res.Vars[1].Value != "noc@example.net" {
			t.Errorf("v%s: values %+v", version, res.Vars)
		}
		if n, ok := res.Vars[2].Value.(int64); !ok || n < 0 {
			t.Errorf("v%s: sysUpTime %T %v", version, res.Vars[2].Value, res.Vars[2].Value)
		}
	}

	// An OID the agent does not have: v2c says so per variable.
	p, _ := New(Config{Target: addr, Community: "public", OIDs: []string{"1.3.6.1.2.1.1.6.0", "1.3.6.1.4.1.99999.1.0"}, Timeout: 2 * time.Second})
	res, err := p.Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Vars[1].Type != "NoSuchObject" && res.Vars[1].Type != "NoSuchInstance" || res.Vars[1].Value != nil {
		t.Errorf("missing OID: %+v", res.Vars[1])
	}

	// More OIDs than one request carries: batched.
	var many []string
	for range 70 {
		many = append(many, "1.3.6.1.2.1.1.6.0")
	}
	p, _ = New(Config{Target: addr, Community: "public", OIDs: many, Timeout: 2 * time.Second})
	if res, err := p.Poll(context.Background()); err != nil || len(res.Vars) != 70 {
		t.Fatalf("70 OIDs: %d vars, %v", len(res.Vars), err)
	}

	// A wrong community gets no answer: a timeout, not a hang.
	p, _ = New(Config{Target: addr, Community: "wrong", OIDs: []string{"1.3.6.1.2.1.1.6.0"}, Timeout: 300 * time.Millisecond})
	if _, err := p.Poll(context.Background()); err == nil {
		t.Fatal("wrong community answered")
	}
}

func TestConvert(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   gosnmp.SnmpPDU
		typ  string
		want any
	}{
		{gosnmp.SnmpPDU{Name: ".1.2", Type: gosnmp.OctetString, Value: []byte("eth0")}, "OctetString", "eth0"},
		{gosnmp.SnmpPDU{Name: ".1.2", Type: gosnmp.OctetString, Value: []byte{0, 0x1b, 0xff}}, "OctetString", "0x001bff"},
		{gosnmp.SnmpPDU{Name: ".1.2", Type: gosnmp.Counter64, Value: uint64(1 << 63)}, "Counter64", uint64(1 << 63)},
		{gosnmp.SnmpPDU{Name: ".1.2", Type: gosnmp.Integer, Value: -5}, "Integer", int64(-5)},
		{gosnmp.SnmpPDU{Name: ".1.2", Type: gosnmp.IPAddress, Value: "10.0.0.1"}, "IPAddress", "10.0.0.1"},
		{gosnmp.SnmpPDU{Name: ".1.2", Type: gosnmp.NoSuchInstance}, "NoSuchInstance", nil},
		{gosnmp.SnmpPDU{Name: ".1.2", Type: gosnmp.OctetString, Value: "not bytes"}, "OctetString", ""},
	}
	for _, c := range cases {
		v := convert(c.in)
		if v.OID != "1.2" || v.Type != c.typ || fmt.Sprint(v.Value) != fmt.Sprint(c.want) {
			t.Errorf("convert(%+v) = %+v, want %s %v", c.in, v, c.typ, c.want)
		}
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []Config{
		{Target: "nohost", OIDs: []string{"1.2"}},
		{Target: "h:99999", OIDs: []string{"1.2"}},
		{Target: "h:161", Version: "3", OIDs: []string{"1.2"}},
		{Target: "h:161"},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) succeeded", c)
		}
	}
	if !errors.Is(fmt.Errorf("%w: x", ErrPDU), ErrPDU) {
		t.Fatal("ErrPDU does not wrap")
	}
}
