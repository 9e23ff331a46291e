package command_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-dm/lastmile/dm/command"
	"github.com/lastmile-dm/lastmile/dm/event"
	"github.com/lastmile-dm/lastmile/dm/topic"
	"github.com/lastmile-dm/lastmile/internal/poll"
)

// loop is an in-memory stand-in for the broker and one device per ID: the
// device answers with answer(msg), or never when answer is nil. The real
// broker and real MQTT clients are exercised in cmd/lastmile/internal/node.
type loop struct {
	svc     *command.Service
	mu      sync.Mutex
	online  map[string]byte
	sent    []command.Message
	answer  func(m command.Message) (command.Reply, bool)
	sendErr error
}

func (l *loop) Online(_ context.Context, id string) (bool, byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if id == "ghost" {
		return false, 0, errors.New("registry: device not found")
	}
	v, ok := l.online[id]
	return ok, v, nil
}

func (l *loop) Send(m command.Message) error {
	l.mu.Lock()
	l.sent = append(l.sent, m)
	answer, err := l.answer, l.sendErr
	l.mu.Unlock()
	if err != nil {
		return err
	}
	if answer != nil {
		if r, ok := answer(m); ok {
			go l.svc.HandleReply(r)
		}
	}
	return nil
}

func (l *loop) lastSent() command.Message {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent[len(l.sent)-1]
}

type recorder struct {
	mu  sync.Mutex
	evs []event.Event
}

func (r *recorder) Publish(ev event.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
}

func newLoop(t *testing.T, cfg command.Config) (*loop, *recorder, *prometheus.Registry) {
	t.Helper()
	l := &loop{online: map[string]byte{"v5": 5, "v3": 4}}
	rec := &recorder{}
	m := prometheus.NewRegistry()
	cfg.Devices, cfg.Transport, cfg.Events, cfg.Registerer = l, l, rec, m
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := command.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l.svc = svc
	return l, rec, m
}

// echo answers like a well-behaved device: on the reply topic (MQTT 5:
// the response topic; 3.1.1: derived), status 200, the request as payload.
func echo(device string) func(m command.Message) (command.Reply, bool) {
	return func(m command.Message) (command.Reply, bool) {
		reply := m.ResponseTopic
		if strings.Count(m.Topic, "/") == 4 { // 3.1.1 form: derive
			reply = strings.Replace(m.Topic, "/cmd/", "/cmdreply/", 1)
		}
		p, _ := json.Marshal(topic.Reply{Status: 200, Payload: m.Payload})
		return command.Reply{Topic: reply, Payload: p, PrincipalID: device}, true
	}
}

func TestInvokeRoundTrip(t *testing.T) {
	t.Parallel()
	l, rec, _ := newLoop(t, command.Config{})
	for _, dev := range []string{"v5", "v3"} {
		l.mu.Lock()
		l.answer = echo(dev)
		l.mu.Unlock()
		res, err := l.svc.Invoke(context.Background(), command.Request{DeviceID: dev, Name: "ping", Payload: json.RawMessage(`{"n":1}`), Timeout: 5 * time.Second})
		if err != nil {
			t.Fatalf("%s: %v", dev, err)
		}
		if res.Status != 200 || string(res.Payload) != `{"n":1}` || res.RequestID == "" {
			t.Fatalf("%s: %+v", dev, res)
		}
		sent := l.lastSent()
		want := topic.CommandRequest(dev, "ping")
		if dev == "v3" {
			want = topic.CommandRequestV3(dev, "ping", res.RequestID)
		}
		if sent.Topic != want || sent.ResponseTopic != topic.CommandReply(dev, "ping", res.RequestID) || string(sent.CorrelationData) != res.RequestID {
			t.Fatalf("%s: sent %+v", dev, sent)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.evs) != 2 || rec.evs[0].Command.Outcome != event.OutcomeReplied || rec.evs[0].Command.Status != 200 {
		t.Fatalf("events %+v", rec.evs)
	}
	if l.svc.Pending() != 0 {
		t.Fatalf("%d pending", l.svc.Pending())
	}
}

func TestInvokeBadRequests(t *testing.T) {
	t.Parallel()
	l, _, _ := newLoop(t, command.Config{MaxPayload: 16})
	for name, r := range map[string]command.Request{
		"bad device":      {DeviceID: "a/b", Name: "x"},
		"bad name":        {DeviceID: "v5", Name: "a/b"},
		"empty name":      {DeviceID: "v5"},
		"long name":       {DeviceID: "v5", Name: strings.Repeat("n", 65)},
		"short timeout":   {DeviceID: "v5", Name: "x", Timeout: 999 * time.Millisecond},
		"long timeout":    {DeviceID: "v5", Name: "x", Timeout: 301 * time.Second},
		"negative":        {DeviceID: "v5", Name: "x", Timeout: -time.Second},
		"not json":        {DeviceID: "v5", Name: "x", Payload: json.RawMessage(`{`)},
		"payload too big": {DeviceID: "v5", Name: "x", Payload: json.RawMessage(`"` + strings.Repeat("x", 20) + `"`)},
	} {
		if _, err := l.svc.Invoke(context.Background(), r); !errors.Is(err, command.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := l.svc.Invoke(context.Background(), command.Request{DeviceID: "off", Name: "x"}); !errors.Is(err, command.ErrOffline) {
		t.Errorf("offline: %v", err)
	}
	if _, err := l.svc.Invoke(context.Background(), command.Request{DeviceID: "ghost", Name: "x"}); err == nil || errors.Is(err, command.ErrOffline) {
		t.Errorf("unknown device: %v", err)
	}
	l.sendErr = errors.New("broker stopped")
	if _, err := l.svc.Invoke(context.Background(), command.Request{DeviceID: "v5", Name: "x"}); err == nil || l.svc.Pending() != 0 {
		t.Errorf("send failure: %v, %d pending", err, l.svc.Pending())
	}
}

// TestRepliesThatDoNotCount: a reply from another principal, with a wrong
// correlation, for another command, malformed, or after the timeout.
func TestRepliesThatDoNotCount(t *testing.T) {
	t.Parallel()
	l, rec, m := newLoop(t, command.Config{})
	var mu sync.Mutex
	var first command.Message
	l.answer = func(msg command.Message) (command.Reply, bool) {
		mu.Lock()
		first = msg
		mu.Unlock()
		return command.Reply{}, false
	}
	done := make(chan error, 1)
	go func() {
		_, err := l.svc.Invoke(context.Background(), command.Request{DeviceID: "v5", Name: "slow", Timeout: time.Second})
		done <- err
	}()
	waitFor(t, func() bool { return l.svc.Pending() == 1 })
	mu.Lock()
	msg := first
	mu.Unlock()
	ok, _ := json.Marshal(topic.Reply{Status: 200})
	for _, r := range []command.Reply{
		{Topic: msg.ResponseTopic, Payload: ok, PrincipalID: "app:oss"},
		{Topic: msg.ResponseTopic, Payload: ok, PrincipalID: "v3"},
		{Topic: msg.ResponseTopic, Payload: ok, PrincipalID: "v5", CorrelationData: []byte("other")},
		{Topic: strings.Replace(msg.ResponseTopic, "/slow/", "/other/", 1), Payload: ok, PrincipalID: "v5"},
		{Topic: "$dm/v5/cmdreply/slow", Payload: ok, PrincipalID: "v5"},
	} {
		l.svc.HandleReply(r)
	}
	if err := <-done; !errors.Is(err, command.ErrTimeout) {
		t.Fatalf("got %v, want ErrTimeout", err)
	}
	l.svc.HandleReply(command.Reply{Topic: msg.ResponseTopic, Payload: ok, PrincipalID: "v5"})
	want := map[string]float64{"foreign": 2, "malformed": 2, "unknown": 1, "late": 1}
	for result, n := range want {
		if got := counter(t, m, "lastmile_commands_replies_total", "result", result); got != n {
			t.Errorf("replies{result=%s} = %v, want %v", result, got, n)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.evs) != 1 || rec.evs[0].Command.Outcome != event.OutcomeTimeout {
		t.Fatalf("events %+v", rec.evs)
	}
}

func TestMalformedReply(t *testing.T) {
	t.Parallel()
	l, _, _ := newLoop(t, command.Config{})
	l.answer = func(msg command.Message) (command.Reply, bool) {
		return command.Reply{Topic: msg.ResponseTopic, Payload: []byte(`{"status":"ok"}`), PrincipalID: "v5"}, true
	}
	if _, err := l.svc.Invoke(context.Background(), command.Request{DeviceID: "v5", Name: "x"}); !errors.Is(err, command.ErrBadReply) {
		t.Fatalf("malformed reply: %v", err)
	}
}

func TestPendingBounds(t *testing.T) {
	t.Parallel()
	l, _, _ := newLoop(t, command.Config{MaxPending: 3, MaxPendingPerDevice: 2})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 3)
	for i, dev := range []string{"v5", "v5", "v3"} {
		go func() {
			_, err := l.svc.Invoke(ctx, command.Request{DeviceID: dev, Name: "x", Timeout: 300 * time.Second})
			errs <- err
		}()
		waitFor(t, func() bool { return l.svc.Pending() == i+1 })
	}
	if _, err := l.svc.Invoke(ctx, command.Request{DeviceID: "v3", Name: "x"}); !errors.Is(err, command.ErrTooManyPending) {
		t.Fatalf("4th: %v", err)
	}
	cancel()
	for range 3 {
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Fatalf("canceled invocation: %v", err)
		}
	}
	if l.svc.Pending() != 0 {
		t.Fatal("pending after cancel")
	}
	l2, _, _ := newLoop(t, command.Config{MaxPendingPerDevice: 1})
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go func() {
		_, _ = l2.svc.Invoke(ctx2, command.Request{DeviceID: "v5", Name: "x", Timeout: 300 * time.Second})
	}()
	waitFor(t, func() bool { return l2.svc.Pending() == 1 })
	if _, err := l2.svc.Invoke(ctx2, command.Request{DeviceID: "v5", Name: "x"}); !errors.Is(err, command.ErrTooManyPending) {
		t.Fatalf("per device: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	poll.Until(t, 10*time.Second, "the condition", cond)
}

func counter(t *testing.T, g prometheus.Gatherer, name, label, value string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
