package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// Mochi is bare upstream mochi-mqtt (the module lastmile's broker was
// forked from) with its defaults and an allow-all authentication hook: no
// ACL, no persistence, no presence, no metrics. It is the floor the issue
// measures lastmile's hooks and connection layer against.
//
// It runs as its own process — the lmbench binary re-executed as
// `lmbench mochi-serve` — so that its RSS and CPU are read like the other
// targets' and never mixed with the generator's.
type Mochi struct {
	// Binary is the lmbench executable; empty means this process's own.
	Binary string

	p     *proc
	addr  string
	creds *Creds
}

func (m *Mochi) Name() string  { return "mochi" }
func (m *Mochi) Stop() error   { return m.p.stop() }
func (m *Mochi) PID() int      { return m.p.cmd.Process.Pid }
func (m *Mochi) Addr() string  { return m.addr }
func (m *Mochi) Creds() *Creds { return m.creds }

// Provision has nothing to store: bare mochi lets every client in. The
// credentials are still sent, so the CONNECT packets are the same size as
// for the other targets.
func (m *Mochi) Provision(_ context.Context, devices int) error {
	if m.creds != nil && len(m.creds.DevicePassword) >= devices {
		return nil
	}
	m.creds = &Creds{DevicePassword: map[string]string{}, AppUser: "bench-app", AppPassword: "bench-app-secret-0123456789",
		AppClientID: func(i int) string { return fmt.Sprintf("bench-app-%d", i) }}
	for i := range devices {
		id := DeviceID(i)
		m.creds.DevicePassword[id] = "pw-" + id + "-0123456789abcdef"
	}
	return nil
}

func (m *Mochi) Start(ctx context.Context) error {
	bin := m.Binary
	if bin == "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("mochi: find own binary: %w", err)
		}
		bin = self
	}
	p, addr, err := startOnFreePort(ctx, "mochi", func(port int) (*proc, error) {
		return startProc(bin, []string{"mochi-serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port)}, nil, nil)
	})
	if err != nil {
		return err
	}
	m.p, m.addr = p, addr
	return nil
}

// ServeMochi runs bare mochi on addr until ctx ends: mqtt.New with its
// default options, the allow-all hook and one TCP listener.
func ServeMochi(ctx context.Context, addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("mochi-serve: -addr %q: %w", addr, err)
	}
	s := mqtt.New(&mqtt.Options{
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		return err
	}
	if err := s.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})); err != nil {
		return err
	}
	if err := s.Serve(); err != nil {
		return err
	}
	<-ctx.Done()
	if err := s.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}
