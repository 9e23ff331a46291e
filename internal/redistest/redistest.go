// Package redistest runs a real redis-server for tests: a child process of
// the test on a free loopback port, in a temporary directory, with
// append-only fsync on every write so crash tests mean something. It is
// killed and reaped when the test ends.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is one running redis-server.
type Server struct {
	addr string
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// Addr is host:port.
func (s *Server) Addr() string { return s.addr }

// Start starts a redis-server and returns its address.
func Start(t testing.TB) string { return New(t).Addr() }

// New starts a redis-server for t. Without redis-server installed the test
// is skipped, unless CI is set, where that is a failure.
func New(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server not installed; run scripts/test-deps.sh (make test does)")
		}
		t.Skip("redis-server not installed; run scripts/test-deps.sh (make test does)")
	}
	s := &Server{dir: t.TempDir()}
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if lastErr = s.start(bin); lastErr == nil {
			t.Cleanup(s.Kill)
			return s
		}
	}
	t.Fatalf("start redis-server: %v", lastErr)
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) start(bin string) error {
	_, port, _ := net.SplitHostPort(s.addr)
	//nolint:gosec // G204: the redis-server found in PATH, with fixed arguments
	s.cmd = exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--dir", s.dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "no", "--loglevel", "warning")
	s.cmd.Stdout, s.cmd.Stderr = nil, nil
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return err
	}
	s.done = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("redis-server on %s exited at start (port taken?)", s.addr)
		default:
		}
		if ping(s.addr) == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.Kill()
	return fmt.Errorf("redis-server on %s did not answer PING within 10s", s.addr)
}

// ping speaks just enough RESP to see the server answer.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}

// Kill stops the server with SIGKILL, as a crash would, and reaps it.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Restart starts the server again on the same port and directory, so its
// append-only file is replayed.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Kill()
	bin, _ := exec.LookPath("redis-server")
	if err := s.start(bin); err != nil {
		t.Fatalf("restart redis-server: %v", err)
	}
}
