package broker

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestQuieter: mochi's per-message "client store quota reached" is passed
// on once per interval with the count it stands for; warnings that would
// print packets are demoted.
func TestQuieter(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	h := quieter{Handler: slog.NewTextHandler(&buf, nil), quota: &sampler{}}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	emit := func(at time.Time, msg string) {
		if err := h.Handle(context.Background(), slog.NewRecord(at, slog.LevelWarn, msg, 0)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		emit(t0.Add(time.Duration(i)*time.Millisecond), "client store quota reached")
	}
	emit(t0.Add(dropLogInterval+time.Second), "client store quota reached")
	emit(t0, "error processing packet")
	out := buf.String()
	if n := strings.Count(out, "client store quota reached"); n != 2 {
		t.Fatalf("%d quota lines, want 2:\n%s", n, out)
	}
	if !strings.Contains(out, "dropped_since_last_log=1\n") || !strings.Contains(out, "dropped_since_last_log=100") {
		t.Errorf("counts missing:\n%s", out)
	}
	if !strings.Contains(out, "reason=session_queue_full") {
		t.Errorf("reason missing:\n%s", out)
	}
	if strings.Contains(out, "error processing packet") {
		t.Errorf("a packet-printing warning got through:\n%s", out)
	}
}
