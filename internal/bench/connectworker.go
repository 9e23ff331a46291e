package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// A process can hold about 20,000 open files here, so one generator
// process cannot hold more connections than that. With Params.Procs > 1 the
// connect scenario runs its devices in that many worker processes — the
// lmbench binary re-executed as `lmbench connect-worker` — each with its own
// file limit, spread over the same source addresses.

// workerSpec is what the coordinator writes to a worker's stdin (one JSON
// line; the passwords never appear on a command line).
type workerSpec struct {
	Addrs     []string `json:"addrs"` // device i dials Addrs[i % len(Addrs)]
	First     int      `json:"first"` // index of the first device
	Passwords []string `json:"passwords"`
	Sources   int      `json:"sources"`
	Width     int      `json:"width"`
}

// workerReport is what a worker prints once its devices are connected.
type workerReport struct {
	OK         int64  `json:"ok"`
	Failed     int64  `json:"failed"`
	StartNano  int64  `json:"start_unix_nano"`
	EndNano    int64  `json:"end_unix_nano"`
	CPUNano    int64  `json:"cpu_nano"`
	FirstError string `json:"first_error,omitempty"`
}

// RunConnectWorker is `lmbench connect-worker`: it reads a workerSpec from
// in, connects the devices, writes a workerReport to out, keeps the
// connections until in is closed (the coordinator is done measuring), then
// disconnects them.
func RunConnectWorker(in io.Reader, out io.Writer) error {
	br := bufio.NewReader(in)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("connect-worker: read spec: %w", err)
	}
	var spec workerSpec
	if err := json.Unmarshal(line, &spec); err != nil {
		return fmt.Errorf("connect-worker: bad spec: %w", err)
	}
	if len(spec.Addrs) == 0 || spec.First < 0 || spec.Width < 1 {
		return errors.New("connect-worker: spec needs addrs, first >= 0 and width >= 1")
	}
	ctx := context.Background()
	clients := make([]*client, len(spec.Passwords))
	var (
		mu       sync.Mutex
		rep      workerReport
		firstErr error
	)
	cpu0 := ownCPU()
	start := time.Now()
	err = parallel(ctx, len(spec.Passwords), spec.Width, func(ctx context.Context, j int) error {
		i := spec.First + j
		id := DeviceID(i)
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		c, _, err := dial(cctx, connectOpts{addr: spec.Addrs[i%len(spec.Addrs)], localIP: sourceIP(i, spec.Sources), clientID: id,
			username: id, password: spec.Passwords[j], keepalive: 60, clean: true})
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			rep.Failed++
			if firstErr == nil {
				firstErr = err
			}
			return nil
		}
		rep.OK++
		clients[j] = c
		return nil
	})
	end := time.Now()
	defer closeAll(clients)
	if err != nil {
		return err
	}
	rep.StartNano, rep.EndNano, rep.CPUNano = start.UnixNano(), end.UnixNano(), int64(ownCPU()-cpu0)
	if firstErr != nil {
		rep.FirstError = firstErr.Error()
	}
	if err := json.NewEncoder(out).Encode(rep); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, br) // until the coordinator closes stdin
	return nil
}

// ownCPU is this process's CPU time, without its children's.
func ownCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// worker is a running connect-worker process.
type worker struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

// connectInWorkers connects devices [0, n) in procs worker processes and
// returns their reports; release disconnects them and ends the workers.
func connectInWorkers(ctx context.Context, env Env, p Params, n int) (reps []workerReport, release func(), err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("connect workers: find own binary: %w", err)
	}
	creds := env.Target.Creds()
	var workers []*worker
	release = func() {
		for _, w := range workers {
			_ = w.stdin.Close()
		}
		for _, w := range workers {
			done := make(chan struct{})
			go func() { _ = w.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				_ = w.cmd.Process.Kill()
				<-done
			}
		}
	}
	width := max(1, connectWidth/p.Procs)
	logw := &lockedWriter{w: env.Log} // the workers' stderr, copied concurrently
	for k := range p.Procs {
		first, last := k*n/p.Procs, (k+1)*n/p.Procs
		spec := workerSpec{Addrs: addrsOf(env.Target), First: first, Sources: p.Sources, Width: width}
		for i := first; i < last; i++ {
			spec.Passwords = append(spec.Passwords, creds.DevicePassword[DeviceID(i)])
		}
		cmd := exec.Command(self, "connect-worker") //nolint:gosec // G204: this very binary
		cmd.Stderr = logw
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		stdin, err := cmd.StdinPipe()
		if err != nil {
			release()
			return nil, nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			release()
			return nil, nil, err
		}
		if err := cmd.Start(); err != nil {
			release()
			return nil, nil, fmt.Errorf("start connect worker: %w", err)
		}
		w := &worker{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
		workers = append(workers, w)
		b, _ := json.Marshal(spec)
		if _, err := stdin.Write(append(b, '\n')); err != nil {
			release()
			return nil, nil, fmt.Errorf("connect worker %d: %w", k, err)
		}
	}
	type answer struct {
		rep workerReport
		err error
	}
	answers := make(chan answer, len(workers))
	for k, w := range workers {
		go func() {
			line, err := w.out.ReadBytes('\n')
			var rep workerReport
			if err == nil {
				err = json.Unmarshal(line, &rep)
			}
			if err != nil {
				err = fmt.Errorf("connect worker %d: no report: %w", k, err)
			}
			answers <- answer{rep, err}
		}()
	}
	for range workers {
		select {
		case a := <-answers:
			if a.err != nil {
				release()
				return nil, nil, a.err
			}
			reps = append(reps, a.rep)
		case <-ctx.Done():
			release()
			return nil, nil, ctx.Err()
		}
	}
	return reps, release, nil
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
