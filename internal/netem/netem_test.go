package netem

import (
	"bufio"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// echo is a real TCP echo server.
func echo(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return l.Addr().String()
}

func newProxy(t *testing.T) *Proxy {
	t.Helper()
	p, err := New(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func roundTrip(c net.Conn, msg string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

func TestUpAndLatency(t *testing.T) {
	t.Parallel()
	p := newProxy(t)
	p.SetLatency(50 * time.Millisecond)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if got, err := roundTrip(c, "hello"); err != nil || got != "hello\n" {
		t.Fatalf("%q %v", got, err)
	}
	// A lower bound only: the latency is a minimum the proxy guarantees,
	// so a slow machine cannot make this fail.
	if rtt := time.Since(start); rtt < 100*time.Millisecond {
		t.Fatalf("round trip %s through 2x50ms of latency", rtt)
	}
}

func TestCutResetsAndRefuses(t *testing.T) {
	t.Parallel()
	p := newProxy(t)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := roundTrip(c, "a"); err != nil {
		t.Fatal(err)
	}
	p.SetMode(Cut)
	if _, err := roundTrip(c, "b"); err == nil {
		t.Fatal("open connection survived the cut")
	}
	c2, err := net.Dial("tcp", p.Addr())
	if err == nil {
		if _, err := roundTrip(c2, "c"); err == nil {
			t.Fatal("new connection works while cut")
		}
		c2.Close()
	}
	p.SetMode(Up)
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if got, err := roundTrip(c3, "d"); err != nil || got != "d\n" {
		t.Fatalf("after restore: %q %v", got, err)
	}
}

func TestBlackholeDropsSilently(t *testing.T) {
	t.Parallel()
	p := newProxy(t)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p.SetMode(Blackhole)
	_ = c.SetDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := c.Write([]byte("x\n")); err != nil {
		t.Fatalf("write into a blackhole failed: %v", err)
	}
	buf := make([]byte, 4)
	if _, err = c.Read(buf); !isTimeout(err) {
		t.Fatalf("read from a blackhole: %v, want a timeout", err)
	}
	// New connections are accepted and go nowhere either.
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_ = c2.SetDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := c2.Write([]byte("y\n")); err != nil {
		t.Fatalf("write into a blackhole failed: %v", err)
	}
	if _, err := c2.Read(buf); !isTimeout(err) {
		t.Fatalf("blackholed new connection: %v, want a timeout (open, silent)", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
