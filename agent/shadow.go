package agent

import (
	"context"
	"log/slog"
	"time"

	"github.com/lastmile-dm/lastmile/agent/conn"
	"github.com/lastmile-dm/lastmile/agent/state"
)

// ShadowContract is how the device's shadow travels on the topic contract
// (dm/topic/shadow.go): where deltas arrive, how to read one, and how to
// publish a report. Implementations are pure functions of their arguments.
type ShadowContract interface {
	// DeltaFilters are the filters the device subscribes to (the delta
	// topic; a contract may add the answer to a "get").
	DeltaFilters(deviceID string) []string
	// SyncRequest is published after the report on every connection, when
	// ok: e.g. a shadow "get" whose answer carries the delta that built up
	// while the device was offline (DecodeDelta then reads that answer).
	SyncRequest(deviceID string) (m conn.Outgoing, ok bool)
	// DecodeDelta reads a message on those filters. ok is false for a
	// message that carries no delta to apply (e.g. an accepted report).
	DecodeDelta(deviceID string, m conn.Message) (delta map[string]any, ok bool, err error)
	// EncodeReport builds the message that updates the reported state.
	// reported is nested ({"wifi":{"ssid":"x"}}); errors holds the keys
	// that could not be applied, with the reason, for the contract to
	// place (e.g. under a reserved key).
	EncodeReport(deviceID string, reported map[string]any, errors map[string]string) (conn.Outgoing, error)
}

// Shadow is the capability that keeps the device's shadow: it reports the
// device state on every connection and applies deltas through an Applier,
// reporting what was applied and what failed.
type Shadow struct {
	DeviceID string
	Contract ShadowContract
	Reporter *state.Reporter
	Applier  *state.Applier
	Logger   *slog.Logger
}

var _ Sequential = (*Shadow)(nil)

// Sequential: deltas are applied and reported one at a time, in the order
// they arrived, and the full report on connecting does not overlap them.
func (*Shadow) Sequential() {}

// Filters subscribes to the delta filters.
func (s *Shadow) Filters(deviceID string) []string { return s.Contract.DeltaFilters(deviceID) }

func (s *Shadow) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// Connected reports the full device state, then asks for what changed
// while the device was away.
func (s *Shadow) Connected(ctx context.Context, p Publisher, _ conn.Protocol) {
	s.report(ctx, p, s.Reporter.Reported(), nil)
	if m, ok := s.Contract.SyncRequest(s.DeviceID); ok {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := p.Publish(pctx, m); err != nil {
			s.log().Warn("shadow sync request not delivered", "err", err)
		}
	}
}

// Handle applies a delta and reports the outcome.
func (s *Shadow) Handle(ctx context.Context, m conn.Message, p Publisher) {
	delta, ok, err := s.Contract.DecodeDelta(s.DeviceID, m)
	if err != nil {
		s.log().Warn("unreadable shadow delta; ignored", "topic", m.Topic, "err", err)
		return
	}
	if !ok || len(delta) == 0 {
		return
	}
	res := s.Applier.Apply(ctx, delta)
	s.log().Info("shadow delta applied", "applied", len(res.Reported), "failed", len(res.Errors))
	s.report(ctx, p, state.Nest(res.Reported), res.Errors)
}

func (s *Shadow) report(ctx context.Context, p Publisher, reported map[string]any, errs map[string]string) {
	out, err := s.Contract.EncodeReport(s.DeviceID, reported, errs)
	if err != nil {
		s.log().Error("encode shadow report", "err", err)
		return
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p.Publish(pctx, out); err != nil {
		s.log().Warn("shadow report not delivered", "err", err)
	}
}
