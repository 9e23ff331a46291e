package agent

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/lastmile-dm/lastmile/agent/conn"
	"github.com/lastmile-dm/lastmile/dm/topic"
)

// connectLoop connects, serves the session until it ends, waits out the
// backoff, and again, until ctx ends.
func (a *Agent) connectLoop(ctx context.Context) {
	for ctx.Err() == nil {
		s, err := a.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d, werr := a.waitBackoff(ctx)
			a.log.Warn("connect failed", "err", err, "retry_after", d.Round(time.Millisecond), "attempt", a.backoff.Attempts())
			if werr != nil {
				return
			}
			continue
		}
		a.backoff.Reset()
		err = a.serve(ctx, s)
		_ = s.Close()
		a.setSession(nil)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errKicked) {
			a.log.Info("reconnecting on request")
			continue
		}
		d, werr := a.waitBackoff(ctx)
		a.log.Warn("connection lost", "err", err, "retry_after", d.Round(time.Millisecond))
		if werr != nil {
			return
		}
	}
}

var errKicked = errors.New("reconnect requested")

// waitBackoff waits out the backoff; Reconnect cuts the wait short (new
// settings deserve an attempt now).
func (a *Agent) waitBackoff(ctx context.Context) (time.Duration, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-a.kick:
			cancel()
		case <-wctx.Done():
		}
	}()
	d, err := a.backoff.Wait(wctx)
	if err != nil && ctx.Err() == nil {
		return d, nil // kicked
	}
	return d, err
}

func (a *Agent) setSession(s conn.Session) {
	a.mu.Lock()
	a.session = s
	a.mu.Unlock()
}

// Publish publishes on the live session (the Publisher of capabilities).
func (a *Agent) Publish(ctx context.Context, m conn.Outgoing) error {
	a.mu.Lock()
	s := a.session
	a.mu.Unlock()
	if s == nil {
		return conn.ErrClosed
	}
	return s.Publish(ctx, m)
}

// connect opens a session and subscribes the capabilities' filters.
func (a *Agent) connect(ctx context.Context) (conn.Session, error) {
	cfg, err := a.connConfig()
	if err != nil {
		return nil, err
	}
	sctx, cancelSession := context.WithCancel(ctx)
	calls := newDispatcher(a.cfg.Capabilities)
	s, err := conn.Connect(ctx, cfg, func(m conn.Message) { a.route(sctx, calls, m) })
	if err != nil {
		cancelSession()
		return nil, err
	}
	go func() { // handlers end with their session
		select {
		case <-s.Done():
		case <-ctx.Done():
		}
		cancelSession()
	}()
	if cfg.Protocol == conn.Auto && s.Protocol() == conn.MQTT3 {
		a.mu.Lock()
		a.protocol = conn.MQTT3 // do not ask this server for 5 every time
		a.mu.Unlock()
	}
	var filters []string
	for _, c := range a.cfg.Capabilities {
		filters = append(filters, c.Filters(a.cfg.File.DeviceID)...)
	}
	direct := a.directFilters()
	for f := range direct {
		filters = append(filters, f)
	}
	if len(filters) > 0 {
		subCtx, cancel := context.WithTimeout(ctx, a.cfg.File.Server.ConnectTimeout)
		err := s.Subscribe(subCtx, filters...)
		cancel()
		if err != nil {
			_ = s.Close()
			return nil, err
		}
	}
	a.setSession(s)
	if err := a.subscribeLate(s, direct, a.cfg.File.Server.ConnectTimeout); err != nil {
		a.setSession(nil)
		_ = s.Close()
		return nil, err
	}
	// Connected only now, subscribed: a session that fails before this is a
	// failed connect, not a lost connection.
	n := a.connects.Add(1)
	a.log.Info("connected", "server", cfg.Address, "protocol", s.Protocol(), "tls", cfg.TLS != nil, "connects", n)
	for i, c := range a.cfg.Capabilities {
		calls.call(i, func() { c.Connected(sctx, a, s.Protocol()) })
	}
	return s, nil
}

// route hands a message to the capability whose filter matches it, off the
// session's reader (which must not wait for a command): on a goroutine of
// its own, or behind the earlier calls of a Sequential capability.
func (a *Agent) route(ctx context.Context, calls *dispatcher, m conn.Message) {
	if a.routeDirect(m) {
		return
	}
	for i, c := range a.cfg.Capabilities {
		for _, f := range c.Filters(a.cfg.File.DeviceID) {
			if topic.Match(f, m.Topic) {
				calls.call(i, func() { c.Handle(ctx, m, a) })
				return
			}
		}
	}
	a.log.Debug("message on no capability's filter", "topic", m.Topic)
}

// serve drains the offline buffer into the session until the session ends
// (its error), a reconnect is requested (errKicked) or ctx ends.
func (a *Agent) serve(ctx context.Context, s conn.Session) error {
	// A publish that gets no PUBACK within this is a dead link the
	// keepalive has not noticed yet.
	ackTimeout := 2 * a.serverConfig().Keepalive
	for {
		rec, ok, err := a.spool.Peek()
		if err != nil {
			return err
		}
		if !ok {
			select {
			case <-a.spool.Ready():
				continue
			case <-s.Done():
				return s.Err()
			case <-a.kick:
				return errKicked
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		select {
		case <-a.kick:
			return errKicked
		default:
		}
		m := conn.Outgoing{Topic: rec.Topic, Payload: envelope(rec), QoS: 1,
			UserProperties: map[string]string{"seq": strconv.FormatUint(rec.Seq, 10)}}
		pctx, cancel := context.WithTimeout(ctx, ackTimeout)
		err = s.Publish(pctx, m)
		cancel()
		if err != nil && errors.Is(err, conn.ErrRefused) && !isDone(s) {
			// The broker will never take this one (e.g. not authorized):
			// holding it would stall everything behind it.
			a.refused.Add(1)
			a.log.Error("broker refused a telemetry message; dropping it", "topic", rec.Topic, "seq", rec.Seq, "err", err)
		} else if err != nil {
			return err
		} else {
			a.published.Add(1)
		}
		if err := a.spool.Ack(rec.Seq); err != nil {
			return err
		}
	}
}

func isDone(s conn.Session) bool {
	select {
	case <-s.Done():
		return true
	default:
		return false
	}
}
