// Package mosquittotest runs a real mosquitto for tests: a child process of
// the test on a free loopback port, killed and reaped when the test ends.
//
// It knows mosquitto is up from mosquitto's own log ("… running"), not by
// dialling the port: a dial to a loopback port nobody listens on yet can
// connect the socket to itself when the kernel happens to pick the same
// port as its source, and another test's listener can hold the port
// between the check and mosquitto's bind. Either made a test talk to
// something that was not mosquitto. A port mosquitto cannot bind is
// retried with another.
package mosquittotest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Start starts mosquitto on 127.0.0.1 with anonymous access, no
// persistence and the extra configuration lines conf (later lines win),
// and returns its address. Without mosquitto installed the test is
// skipped, unless CI is set, where that is a failure. The broker's log is
// printed if the test fails.
func Start(t testing.TB, conf ...string) string {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("mosquitto not installed; run scripts/test-deps.sh (make test does)")
		}
		t.Skip("mosquitto not installed; run scripts/test-deps.sh (make test does)")
	}
	var lastErr error
	for range 5 {
		addr, err := start(t, bin, conf)
		if err == nil {
			return addr
		}
		if !errors.Is(err, errPortTaken) {
			t.Fatal(err)
		}
		lastErr = err
	}
	t.Fatalf("start mosquitto: %v", lastErr)
	return ""
}

var errPortTaken = errors.New("port taken")

func start(t testing.TB, bin string, conf []string) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	lines := append([]string{
		fmt.Sprintf("listener %d 127.0.0.1", port),
		"allow_anonymous true", "persistence false", "user root", "log_dest stderr",
	}, conf...)
	path := filepath.Join(t.TempDir(), "mosquitto.conf")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return "", err
	}
	cmd := exec.Command(bin, "-c", path) //nolint:gosec // G204: the mosquitto found in PATH, with a config file of our own
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	var (
		mu      sync.Mutex
		log     strings.Builder
		running = make(chan struct{})
		exited  = make(chan struct{})
	)
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			mu.Lock()
			log.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if !signalled && strings.Contains(sc.Text(), " running") {
				signalled = true
				close(running)
			}
		}
		_ = cmd.Wait()
	}()
	text := func() string {
		mu.Lock()
		defer mu.Unlock()
		return log.String()
	}
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	select {
	case <-running:
	case <-exited:
		if strings.Contains(text(), "Address already in use") {
			return "", fmt.Errorf("%w: %d", errPortTaken, port)
		}
		return "", fmt.Errorf("mosquitto exited at start:\n%s", text())
	case <-time.After(15 * time.Second):
		stop()
		return "", fmt.Errorf("mosquitto not running after 15 s:\n%s", text())
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", text())
		}
	})
	return fmt.Sprintf("127.0.0.1:%d", port), nil
}
