// Package command runs the commands the platform sends to the agent: the
// built-in reboot, ping and exec (of an allow-listed set of programs only).
// Anything else is answered with a clear error, never run.
//
// The package knows nothing of MQTT: a transport binding (the agent's
// command capability) decodes a request from the topic contract, calls
// Dispatch, and publishes the Response.
//
//	platform ──request──> binding ──Request──> Dispatcher ──> Handler
//	         <─response── binding <─Response─┘
package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
)

// Request is one command to run.
type Request struct {
	// Name selects the handler: "reboot", "ping", "exec".
	Name string
	// Args is the command's JSON object; empty means none.
	Args json.RawMessage
}

// Status of a response.
const (
	StatusOK    = "ok"
	StatusError = "error"
)

// Error codes of a response, one per sentinel error below.
const (
	CodeUnknownCommand = "unknown_command"
	CodeNotAllowed     = "not_allowed"
	CodeBadRequest     = "bad_request"
	CodeFailed         = "failed"
)

// Response is the answer to a Request, JSON-encoded by the binding.
type Response struct {
	Status string `json:"status"`
	// Code and Error explain a failure.
	Code  string `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
	// Result is the command's output on success.
	Result any `json:"result,omitempty"`
}

// Sentinel errors a handler returns (wrapped) to pick a response code.
var (
	ErrUnknownCommand = errors.New("unknown command")
	ErrNotAllowed     = errors.New("not allowed")
	ErrBadRequest     = errors.New("bad request")
	ErrFailed         = errors.New("command failed")
)

// Handler runs one kind of command. Handle must return when ctx ends.
type Handler interface {
	Handle(ctx context.Context, args json.RawMessage) (result any, err error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, args json.RawMessage) (any, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, args json.RawMessage) (any, error) {
	return f(ctx, args)
}

// Dispatcher maps command names to handlers. Register before use; Dispatch
// is then safe for concurrent use.
type Dispatcher struct {
	handlers map[string]Handler
}

// NewDispatcher returns an empty dispatcher.
func NewDispatcher() *Dispatcher { return &Dispatcher{handlers: map[string]Handler{}} }

// Register adds a handler under name, replacing none.
func (d *Dispatcher) Register(name string, h Handler) error {
	if name == "" || h == nil {
		return errors.New("command: empty name or nil handler")
	}
	if _, dup := d.handlers[name]; dup {
		return fmt.Errorf("command: %q registered twice", name)
	}
	d.handlers[name] = h
	return nil
}

// Names lists the registered commands, sorted.
func (d *Dispatcher) Names() []string {
	out := make([]string, 0, len(d.handlers))
	for n := range d.handlers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Dispatch runs req and always returns a Response: an unknown name, bad
// arguments or a failure are answers, not panics.
func (d *Dispatcher) Dispatch(ctx context.Context, req Request) Response {
	h, ok := d.handlers[req.Name]
	if !ok {
		return fail(fmt.Errorf("%w %q (this agent runs: %v)", ErrUnknownCommand, req.Name, d.Names()))
	}
	if len(req.Args) > 0 && !json.Valid(req.Args) {
		return fail(fmt.Errorf("%w: arguments are not JSON", ErrBadRequest))
	}
	res, err := h.Handle(ctx, req.Args)
	if err != nil {
		return fail(err)
	}
	return Response{Status: StatusOK, Result: res}
}

func fail(err error) Response {
	code := CodeFailed
	switch {
	case errors.Is(err, ErrUnknownCommand):
		code = CodeUnknownCommand
	case errors.Is(err, ErrNotAllowed):
		code = CodeNotAllowed
	case errors.Is(err, ErrBadRequest):
		code = CodeBadRequest
	}
	return Response{Status: StatusError, Code: code, Error: err.Error()}
}

// decode parses args strictly into v; empty args leave v as is.
func decode(args json.RawMessage, v any) error {
	if len(args) == 0 || string(args) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytesReader(args))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	return nil
}
