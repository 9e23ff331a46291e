package command

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"time"

	"github.com/lastmile-dm/lastmile/agent/collect"
)

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// Reboot answers at once and runs Argv after Delay, so the answer reaches
// the platform before the link goes down.
type Reboot struct {
	Argv  []string
	Delay time.Duration
	Log   *slog.Logger
	// Started, if set, receives the result of running Argv (tests).
	Started chan<- error
}

var _ Handler = (*Reboot)(nil)

// Handle schedules the reboot.
func (r *Reboot) Handle(_ context.Context, args json.RawMessage) (any, error) {
	var a struct{}
	if err := decode(args, &a); err != nil {
		return nil, err
	}
	if _, err := exec.LookPath(r.Argv[0]); err != nil {
		return nil, fmt.Errorf("%w: reboot program %s: %w", ErrFailed, r.Argv[0], err)
	}
	time.AfterFunc(r.Delay, func() {
		r.Log.Warn("rebooting on the platform's request", "argv", r.Argv)
		// Not tied to the request's context: the reboot must not be
		// cancelled by the answer being sent.
		out, err := exec.Command(r.Argv[0], r.Argv[1:]...).CombinedOutput() //nolint:gosec // G204: commands.reboot.argv of the configuration
		if err != nil {
			r.Log.Error("reboot command failed", "err", err, "output", string(out))
		}
		if r.Started != nil {
			r.Started <- err
		}
	})
	return map[string]any{"rebooting_in": r.Delay.String()}, nil
}

// Ping runs the system's ping against one host.
type Ping struct {
	Program  string
	MaxCount int
}

var _ Handler = (*Ping)(nil)

// PingArgs are the arguments of ping.
type PingArgs struct {
	Host  string `json:"host"`
	Count int    `json:"count"`
}

// validHost accepts an IP address or a DNS name; never something ping
// could read as an option.
func validHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if h == "" || len(h) > 253 || strings.HasPrefix(h, "-") || strings.HasPrefix(h, ".") {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// Handle pings. An unreachable host is a result (reachable: false), not an
// error; a ping that cannot run is an error.
func (p *Ping) Handle(ctx context.Context, args json.RawMessage) (any, error) {
	a := PingArgs{Count: 3}
	if err := decode(args, &a); err != nil {
		return nil, err
	}
	if !validHost(a.Host) {
		return nil, fmt.Errorf("%w: host %q is not an IP address or host name", ErrBadRequest, a.Host)
	}
	if a.Count < 1 || a.Count > p.MaxCount {
		return nil, fmt.Errorf("%w: count %d outside 1..%d", ErrBadRequest, a.Count, p.MaxCount)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(a.Count)*2*time.Second+5*time.Second)
	defer cancel()
	//nolint:gosec // G204: the configured ping program; the host was checked by validHost (no option can pass)
	cmd := exec.CommandContext(ctx, p.Program, "-c", fmt.Sprint(a.Count), "-W", "2", a.Host)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return map[string]any{"host": a.Host, "reachable": true, "output": out.String()}, nil
	case errors.As(err, &ee) && ee.ExitCode() == 1: // no reply
		return map[string]any{"host": a.Host, "reachable": false, "output": out.String()}, nil
	default:
		return nil, fmt.Errorf("%w: %s: %w: %s", ErrFailed, p.Program, err, strings.TrimSpace(out.String()))
	}
}

// Allowed is one program exec may run.
type Allowed struct {
	Argv      []string
	AllowArgs bool
	Timeout   time.Duration
	MaxBytes  int
}

// Exec runs allow-listed programs by name, without a shell.
type Exec struct {
	Allow map[string]Allowed
}

var _ Handler = (*Exec)(nil)

// ExecArgs are the arguments of exec.
type ExecArgs struct {
	Name string   `json:"name"`
	Args []string `json:"args"`
}

// Handle runs the named program.
func (e *Exec) Handle(ctx context.Context, args json.RawMessage) (any, error) {
	var a ExecArgs
	if err := decode(args, &a); err != nil {
		return nil, err
	}
	if a.Name == "" {
		return nil, fmt.Errorf("%w: exec needs a name", ErrBadRequest)
	}
	al, ok := e.Allow[a.Name]
	if !ok {
		return nil, fmt.Errorf("%w: %q is not in this agent's exec allow-list (commands.exec)", ErrNotAllowed, a.Name)
	}
	if len(a.Args) > 0 && !al.AllowArgs {
		return nil, fmt.Errorf("%w: %q takes no arguments (allow_args is off)", ErrNotAllowed, a.Name)
	}
	argv := append(append([]string(nil), al.Argv...), a.Args...)
	out, cut, err := collect.RunProgram(ctx, argv, al.Timeout, al.MaxBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFailed, err)
	}
	return map[string]any{"stdout": out, "truncated": cut}, nil
}
