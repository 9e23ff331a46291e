package proxy_test

import (
	"context"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/lastmile-dm/lastmile/tunnel/snmprelay"
)

func client(tb testing.TB, addr, community string) *gosnmp.GoSNMP {
	tb.Helper()
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	c := &gosnmp.GoSNMP{Target: host, Port: uint16(p), Community: community, Version: gosnmp.Version2c, //nolint:gosec // a port
		Timeout: 5 * time.Second, Retries: 0, MaxRepetitions: 50}
	if err := c.Connect(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Conn.Close() })
	return c
}

// benchGet measures GET round trips and reports p50 and p99.
func benchGet(b *testing.B, c *gosnmp.GoSNMP) {
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		r, err := c.Get([]string{"1.3.6.1.2.1.1.6.0"})
		if err != nil || len(r.Variables) != 1 {
			b.Fatalf("get: %v %v", r, err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkGet: an SNMP GET from the OSS straight to snmpd, and through
// the proxy, the broker, the device's MQTT connection and the executor.
// Run: go test ./tunnel/snmprelay/proxy -run '^$' -bench Get -benchtime 2000x
func BenchmarkGet(b *testing.B) {
	e := setup(b)
	b.Run("direct", func(b *testing.B) { benchGet(b, client(b, e.snmpd, "public")) })
	b.Run("proxy", func(b *testing.B) { benchGet(b, client(b, e.proxy, "oss-ro@gw1")) })
}

// BenchmarkWalk: a GETBULK walk of a large, stable table (the installed
// software table, hrSWInstalledTable: thousands of varbinds on a Debian
// host) directly and through the proxy (OSS over UDP) and the API's Walk.
func BenchmarkWalk(b *testing.B) {
	e := setup(b)
	const root = "1.3.6.1.2.1.25.6.3"
	walk := func(b *testing.B, c *gosnmp.GoSNMP) {
		n := 0
		for range b.N {
			n = 0
			if err := c.BulkWalk(root, func(gosnmp.SnmpPDU) error { n++; return nil }); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n), "varbinds")
	}
	b.Run("direct", func(b *testing.B) { walk(b, client(b, e.snmpd, "public")) })
	b.Run("proxy", func(b *testing.B) { walk(b, client(b, e.proxy, "oss-ro@gw1")) })
	b.Run("api", func(b *testing.B) {
		n := 0
		for range b.N {
			n = 0
			if err := e.p.Walk(context.Background(), "gw1", root, func(snmprelay.Var) error { n++; return nil }); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n), "varbinds")
	})
}
