package command

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func dispatcher(t *testing.T, marker string, started chan error) *Dispatcher {
	t.Helper()
	d := NewDispatcher()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	// The reboot program of the test only leaves a marker: never reboot.
	must(d.Register("reboot", &Reboot{Argv: []string{"touch", marker}, Delay: 10 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Started: started}))
	must(d.Register("ping", &Ping{Program: "ping", MaxCount: 5}))
	must(d.Register("exec", &Exec{Allow: map[string]Allowed{
		"hello":  {Argv: []string{"echo", "hello"}, Timeout: 5 * time.Second, MaxBytes: 100},
		"echo":   {Argv: []string{"echo"}, AllowArgs: true, Timeout: 5 * time.Second, MaxBytes: 100},
		"broken": {Argv: []string{"false"}, Timeout: 5 * time.Second, MaxBytes: 100},
	}}))
	if err := d.Register("exec", &Exec{}); err == nil {
		t.Fatal("registered exec twice")
	}
	return d
}

func TestDispatch(t *testing.T) {
	t.Parallel()
	marker := filepath.Join(t.TempDir(), "rebooted")
	started := make(chan error, 1)
	d := dispatcher(t, marker, started)
	ctx := context.Background()
	cases := []struct {
		name, args string
		status     string
		code       string
		contains   string
	}{
		{"exec", `{"name":"hello"}`, StatusOK, "", `"stdout":"hello\n"`},
		{"exec", `{"name":"echo","args":["a","b"]}`, StatusOK, "", `"stdout":"a b\n"`},
		{"exec", `{"name":"hello","args":["; rm -rf /"]}`, StatusError, CodeNotAllowed, "takes no arguments"},
		{"exec", `{"name":"rm","args":["-rf","/"]}`, StatusError, CodeNotAllowed, "allow-list"},
		{"exec", `{"name":"broken"}`, StatusError, CodeFailed, "exit status 1"},
		{"exec", `{}`, StatusError, CodeBadRequest, "needs a name"},
		{"exec", `{"name":"hello","extra":1}`, StatusError, CodeBadRequest, "unknown field"},
		{"exec", `not json`, StatusError, CodeBadRequest, "not JSON"},
		{"format-disk", ``, StatusError, CodeUnknownCommand, `format-disk`},
		{"ping", `{"host":"127.0.0.1","count":1}`, StatusOK, "", `"reachable":true`},
		{"ping", `{"host":"-f"}`, StatusError, CodeBadRequest, "not an IP address"},
		{"ping", `{"host":"127.0.0.1","count":50}`, StatusError, CodeBadRequest, "outside 1..5"},
		{"ping", `{"host":"a b"}`, StatusError, CodeBadRequest, "not an IP address"},
	}
	for _, c := range cases {
		if c.name == "ping" {
			if _, err := exec.LookPath("ping"); err != nil {
				continue // make test-deps installs it
			}
		}
		resp := d.Dispatch(ctx, Request{Name: c.name, Args: json.RawMessage(c.args)})
		raw, err := json.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != c.status || resp.Code != c.code || !strings.Contains(string(raw), c.contains) {
			t.Errorf("%s %s: %s; want status %s code %q containing %q", c.name, c.args, raw, c.status, c.code, c.contains)
		}
	}

	// Reboot answers first, then runs its (harmless, here) program.
	resp := d.Dispatch(ctx, Request{Name: "reboot"})
	if resp.Status != StatusOK {
		t.Fatalf("reboot: %+v", resp)
	}
	select {
	case err := <-started:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reboot program not run")
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("reboot program did not run: %v", err)
	}
}

func TestRebootProgramMissing(t *testing.T) {
	t.Parallel()
	r := &Reboot{Argv: []string{"/nonexistent/reboot"}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if _, err := r.Handle(context.Background(), nil); !errors.Is(err, ErrFailed) {
		t.Fatalf("missing reboot program: %v", err)
	}
}

// FuzzDispatch: no request makes the dispatcher panic or run a program
// outside the allow-list.
func FuzzDispatch(f *testing.F) {
	f.Add("exec", []byte(`{"name":"hello"}`))
	f.Add("exec", []byte(`{"name":"x","args":[]}`))
	f.Add("ping", []byte(`{"host":"--help"}`))
	f.Add("nope", []byte(`[]`))
	d := NewDispatcher()
	_ = d.Register("exec", &Exec{Allow: map[string]Allowed{"hello": {Argv: []string{"echo", "hi"}, Timeout: time.Second, MaxBytes: 10}}})
	_ = d.Register("ping", &Ping{Program: "/nonexistent/ping", MaxCount: 1})
	f.Fuzz(func(t *testing.T, name string, args []byte) {
		resp := d.Dispatch(context.Background(), Request{Name: name, Args: args})
		if resp.Status == StatusOK {
			out, _ := resp.Result.(map[string]any)
			if name != "exec" || out["stdout"] != "hi\n" {
				t.Fatalf("unexpected success %s %q: %+v", name, args, resp)
			}
		} else if resp.Code == "" || resp.Error == "" {
			t.Fatalf("error without code or message: %+v", resp)
		}
	})
}
