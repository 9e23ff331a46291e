package embedded_test

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-dm/lastmile/broker/persist"
	"github.com/lastmile-dm/lastmile/dm/registry"
	"github.com/lastmile-dm/lastmile/internal/store/embedded"
	"github.com/lastmile-dm/lastmile/internal/store/storetest"
)

func open(t testing.TB, dir string) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(embedded.Config{Dir: dir, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Store {
		s := open(t, t.TempDir())
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestReopenKeepsData(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	s := open(t, dir)
	if err := s.CreateDevice(ctx, &registry.Device{ID: "d1", Enabled: true, Revision: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, []persist.Op{{Bucket: persist.BucketRetained, Key: "tele/d1/x", Value: []byte("v")}}, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	if _, err := s.GetDevice(ctx, "d1"); err != nil {
		t.Fatalf("device lost across reopen: %v", err)
	}
	n := 0
	_ = s.Scan(ctx, persist.BucketRetained, "", func(string, []byte) error { n++; return nil })
	if n != 1 {
		t.Fatalf("retained messages after reopen: %d, want 1", n)
	}
}

func TestSecondOpenFails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir)
	defer s.Close()
	_, err := embedded.Open(embedded.Config{Dir: dir})
	if err == nil {
		t.Fatal("a second Open of a directory in use succeeded")
	}
	if !strings.Contains(err.Error(), "lock") {
		t.Fatalf("second Open: %v; want an error about the lock, so the CLI can explain it", err)
	}
}
