package collect

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFile(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "v")
	if err := os.WriteFile(p, []byte("0.42 0.30 0.20 1/99 1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, cut, err := (&File{Path: p, MaxBytes: 1024}).Collect(context.Background())
	if err != nil || cut || d != "0.42 0.30 0.20 1/99 1234\n" {
		t.Fatalf("%q %v %v", d, cut, err)
	}
	d, cut, err = (&File{Path: p, MaxBytes: 4}).Collect(context.Background())
	if err != nil || !cut || d != "0.42" {
		t.Fatalf("limited: %q %v %v", d, cut, err)
	}
	if _, _, err := (&File{Path: p + "-missing", MaxBytes: 4}).Collect(context.Background()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestCommand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d, cut, err := (&Command{Argv: []string{"echo", "hello", "world"}, Timeout: 5 * time.Second, MaxBytes: 100}).Collect(ctx)
	if err != nil || cut || d != "hello world\n" {
		t.Fatalf("%q %v %v", d, cut, err)
	}
	d, cut, err = (&Command{Argv: []string{"seq", "1", "100000"}, Timeout: 5 * time.Second, MaxBytes: 10}).Collect(ctx)
	if err != nil || !cut || d != "1\n2\n3\n4\n5\n" {
		t.Fatalf("limited: %q %v %v", d, cut, err)
	}
	_, _, err = (&Command{Argv: []string{"sh", "-c", "echo broken >&2; exit 3"}, Timeout: 5 * time.Second, MaxBytes: 10}).Collect(ctx)
	if !errors.Is(err, ErrCommandFailed) || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("failing command: %v", err)
	}
	_, _, err = (&Command{Argv: []string{"sleep", "30"}, Timeout: 100 * time.Millisecond, MaxBytes: 10}).Collect(ctx)
	if !errors.Is(err, ErrCommandFailed) || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("slow command: %v", err)
	}
	_, _, err = (&Command{Argv: []string{"/nonexistent/program"}, Timeout: time.Second, MaxBytes: 10}).Collect(ctx)
	if !errors.Is(err, ErrCommandFailed) {
		t.Fatalf("missing program: %v", err)
	}
}

func TestRunSchedules(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "v")
	_ = os.WriteFile(p, []byte("x"), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	got := map[string]int{}
	errs := 0
	done := make(chan struct{})
	go func() {
		Run(ctx, []Job{
			{Stream: "a", Interval: 10 * time.Millisecond, Collector: &File{Path: p, MaxBytes: 10}},
			{Stream: "b", Interval: 10 * time.Millisecond, Collector: &File{Path: p + "-missing", MaxBytes: 10}},
		}, func(stream string, s Sample) {
			mu.Lock()
			defer mu.Unlock()
			got[stream]++
			if s.Err != nil {
				errs++
				if s.Data != nil {
					t.Error("failed sample carries data")
				}
			}
		}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		close(done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		ok := got["a"] >= 3 && got["b"] >= 3
		mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("samples: %v", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if errs < 3 {
		t.Fatalf("errors of the failing collector not reported as samples: %d", errs)
	}
}
