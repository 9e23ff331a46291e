// Package collect runs the agent's periodic telemetry collectors: the
// output of a program, the content of a file, or an SNMP poll. Each
// collector runs on its own schedule and hands every sample, or the error
// that replaced it, to a sink (the agent's offline buffer).
//
//	Scheduler ── every interval ──> Collector.Collect ──> Sink(stream, Sample)
package collect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/lastmile-dm/lastmile/agent/snmp"
)

// Sample is one collection.
type Sample struct {
	Time time.Time
	// Data is what was collected: a string (file, command) or an
	// snmp.Result. Nil when Err is set.
	Data any
	// Truncated says Data was cut at the collector's size limit.
	Truncated bool
	Err       error
}

// Collector produces samples. Collect must return when ctx ends.
type Collector interface {
	Collect(ctx context.Context) (data any, truncated bool, err error)
}

// File reads a file, up to MaxBytes.
type File struct {
	Path     string
	MaxBytes int
}

var _ Collector = (*File)(nil)

// Collect reads the file.
func (f *File) Collect(context.Context) (any, bool, error) {
	fh, err := os.Open(f.Path)
	if err != nil {
		return nil, false, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, int64(f.MaxBytes)+1))
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", f.Path, err)
	}
	if len(b) > f.MaxBytes {
		return string(b[:f.MaxBytes]), true, nil
	}
	return string(b), false, nil
}

// Command runs a program without a shell and takes its standard output, up
// to MaxBytes. A non-zero exit is an error carrying the end of stderr.
type Command struct {
	Argv     []string
	Timeout  time.Duration
	MaxBytes int
}

var _ Collector = (*Command)(nil)

// ErrCommandFailed wraps a program's failure.
var ErrCommandFailed = errors.New("command failed")

// Collect runs the program.
func (c *Command) Collect(ctx context.Context) (any, bool, error) {
	out, truncated, err := RunProgram(ctx, c.Argv, c.Timeout, c.MaxBytes)
	if err != nil {
		return nil, false, err
	}
	return out, truncated, nil
}

// RunProgram runs argv with a timeout and returns at most maxBytes of
// stdout. Shared with the exec command.
func RunProgram(ctx context.Context, argv []string, timeout time.Duration, maxBytes int) (string, bool, error) {
	if len(argv) == 0 {
		return "", false, fmt.Errorf("%w: empty argv", ErrCommandFailed)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	//nolint:gosec // G204: argv is the operator's configuration (collectors, the exec allow-list)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	stdout := &limited{max: maxBytes}
	stderr := &limited{max: 4096}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = time.Second // a child holding the pipes open cannot hang us
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return "", false, fmt.Errorf("%w: %s timed out after %s", ErrCommandFailed, argv[0], timeout)
	}
	if err != nil {
		msg := bytes.TrimSpace(stderr.buf.Bytes())
		if len(msg) > 0 {
			return "", false, fmt.Errorf("%w: %s: %w: %s", ErrCommandFailed, argv[0], err, msg)
		}
		return "", false, fmt.Errorf("%w: %s: %w", ErrCommandFailed, argv[0], err)
	}
	return stdout.buf.String(), stdout.cut, nil
}

// limited keeps the first max bytes written and discards the rest.
type limited struct {
	buf bytes.Buffer
	max int
	cut bool
}

func (l *limited) Write(p []byte) (int, error) {
	room := l.max - l.buf.Len()
	if room < len(p) {
		l.cut = true
		if room > 0 {
			l.buf.Write(p[:room])
		}
		return len(p), nil
	}
	l.buf.Write(p)
	return len(p), nil
}

// SNMP polls an SNMP agent.
type SNMP struct {
	Poller *snmp.Poller
}

var _ Collector = (*SNMP)(nil)

// Collect polls.
func (s *SNMP) Collect(ctx context.Context) (any, bool, error) {
	r, err := s.Poller.Poll(ctx)
	if err != nil {
		return nil, false, err
	}
	return r, false, nil
}

// Job is a collector on a schedule.
type Job struct {
	Stream    string
	Interval  time.Duration
	Collector Collector
}

// Sink receives samples. It is called from the job's goroutine; jobs run
// concurrently.
type Sink func(stream string, s Sample)

// Run runs every job until ctx ends: each collects at once, then every
// Interval (a slow collection delays the next one, never overlaps it).
func Run(ctx context.Context, jobs []Job, sink Sink, log *slog.Logger) {
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(j.Interval)
			defer t.Stop()
			for {
				data, truncated, err := j.Collector.Collect(ctx)
				if ctx.Err() != nil {
					return // stopping: a collection cut short is not a sample
				}
				if err != nil {
					log.Warn("collector failed", "stream", j.Stream, "err", err)
					data = nil
				}
				sink(j.Stream, Sample{Time: time.Now(), Data: data, Truncated: truncated, Err: err})
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	wg.Wait()
}
