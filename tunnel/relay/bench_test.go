package relay_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/lastmile-dm/lastmile/tunnel"
	"github.com/lastmile-dm/lastmile/tunnel/relay"
)

// sink reads everything and answers with one byte at EOF, so a writer
// knows when all its bytes arrived.
func sink(c *net.TCPConn) {
	if _, err := io.Copy(io.Discard, c); err == nil {
		_, _ = c.Write([]byte{1})
	}
}

// pong answers every byte with a byte.
func pong(c *net.TCPConn) {
	b := make([]byte, 1)
	for {
		if _, err := c.Read(b); err != nil {
			return
		}
		if _, err := c.Write(b); err != nil {
			return
		}
	}
}

type halfConn interface {
	io.ReadWriter
	CloseWrite() error
}

func bulk(b *testing.B, c halfConn) {
	buf := make([]byte, 256<<10)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.CloseWrite(); err != nil {
		b.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkThroughput: bulk transfer platform -> target through the tunnel
// (QoS 0 and 1) and over direct loopback TCP in the same run; compare MB/s.
func BenchmarkThroughput(b *testing.B) {
	target := serve(b, sink)
	b.Run("direct", func(b *testing.B) {
		c, err := net.Dial("tcp", target)
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		bulk(b, c.(*net.TCPConn))
	})
	type variant struct {
		qos     byte
		window  uint32
		maxData int
	}
	var vs []variant
	for _, qos := range []byte{0, 1} {
		for _, window := range []uint32{256 << 10, 512 << 10, 2 << 20} {
			vs = append(vs, variant{qos, window, tunnel.DefaultMaxData})
		}
	}
	vs = append(vs, variant{0, 512 << 10, 16 << 10}, variant{0, 512 << 10, 32 << 10}, variant{0, 512 << 10, 128 << 10})
	for _, v := range vs {
		{
			qos, window := v.qos, v.window
			b.Run(fmt.Sprintf("tunnel-qos%d-window%dk-frame%dk", qos, window>>10, v.maxData>>10), func(b *testing.B) {
				e := setup(b, opts{allow: []string{target}, qos: qos, window: window, maxData: v.maxData})
				s, err := e.relay.Open(context.Background(), relay.OpenRequest{DeviceID: "dev1", Target: target})
				if err != nil {
					b.Fatal(err)
				}
				st, err := s.Dial(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				bulk(b, st)
			})
		}
	}
}

// BenchmarkRoundTrip: one byte there and back, direct and through the
// tunnel; reports p50 and p99 in microseconds.
func BenchmarkRoundTrip(b *testing.B) {
	target := serve(b, pong)
	run := func(b *testing.B, c io.ReadWriter) {
		lat := make([]time.Duration, 0, b.N)
		one := make([]byte, 1)
		b.ResetTimer()
		for range b.N {
			t0 := time.Now()
			if _, err := c.Write(one); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, one); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
	b.Run("direct", func(b *testing.B) {
		c, err := net.Dial("tcp", target)
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		run(b, c)
	})
	for _, qos := range []byte{0, 1} {
		b.Run(fmt.Sprintf("tunnel-qos%d", qos), func(b *testing.B) {
			e := setup(b, opts{allow: []string{target}, qos: qos})
			s, err := e.relay.Open(context.Background(), relay.OpenRequest{DeviceID: "dev1", Target: target})
			if err != nil {
				b.Fatal(err)
			}
			st, err := s.Dial(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			run(b, st)
		})
	}
}

// source writes until the connection closes.
func source(c *net.TCPConn) {
	buf := make([]byte, 256<<10)
	for {
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}

// BenchmarkDownload: bulk transfer target -> platform (the device
// publishes), direct and through the tunnel.
func BenchmarkDownload(b *testing.B) {
	target := serve(b, source)
	read := func(b *testing.B, c io.Reader) {
		buf := make([]byte, 256<<10)
		b.SetBytes(int64(len(buf)))
		b.ResetTimer()
		for range b.N {
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("direct", func(b *testing.B) {
		c, err := net.Dial("tcp", target)
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		read(b, c)
	})
	b.Run("tunnel-qos0", func(b *testing.B) {
		e := setup(b, opts{allow: []string{target}})
		s, err := e.relay.Open(context.Background(), relay.OpenRequest{DeviceID: "dev1", Target: target})
		if err != nil {
			b.Fatal(err)
		}
		st, err := s.Dial(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = st.Close() }()
		read(b, st)
	})
}
