package redis_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-dm/lastmile/broker/persist"
	"github.com/lastmile-dm/lastmile/dm/registry"
	"github.com/lastmile-dm/lastmile/internal/redistest"
	redisstore "github.com/lastmile-dm/lastmile/internal/store/redis"
	"github.com/lastmile-dm/lastmile/internal/store/storetest"
)

var prefixes atomic.Int64

func open(t *testing.T, addr string) *redisstore.Store {
	t.Helper()
	s, err := redisstore.Open(context.Background(), redisstore.Config{Addr: addr,
		KeyPrefix: fmt.Sprintf("t%d:", prefixes.Add(1)), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestContract(t *testing.T) {
	t.Parallel()
	addr := redistest.Start(t)
	storetest.Run(t, func(t *testing.T) storetest.Store { return open(t, addr) })
}

func TestSurvivesRedisCrash(t *testing.T) {
	t.Parallel()
	srv := redistest.New(t)
	ctx := context.Background()
	s, err := redisstore.Open(ctx, redisstore.Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateDevice(ctx, &registry.Device{ID: "d1", Enabled: true, Revision: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, []persist.Op{{Bucket: persist.BucketInflight, Key: "c\x0000001", Value: []byte("m")}}, true); err != nil {
		t.Fatal(err)
	}
	srv.Restart(t) // SIGKILL, then replay of the append-only file
	if _, err := s.GetDevice(ctx, "d1"); err != nil {
		t.Fatalf("device lost across a redis crash: %v", err)
	}
	n := 0
	if err := s.Scan(ctx, persist.BucketInflight, "c\x00", func(string, []byte) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("inflight after crash: n=%d err=%v", n, err)
	}
}

func TestOpenFailsClearly(t *testing.T) {
	t.Parallel()
	_, err := redisstore.Open(context.Background(), redisstore.Config{Addr: "127.0.0.1:1"})
	if err == nil {
		t.Fatal("Open of a closed port succeeded")
	}
	if want := "127.0.0.1:1"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name the address", err)
	}
}
