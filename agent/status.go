package agent

import (
	"context"
	"time"
)

// Status is the agent's own telemetry (status.stream): how full the
// offline buffer is and what it lost.
type Status struct {
	Version  string `json:"agent_version"`
	UptimeS  int64  `json:"uptime_s"`
	Connects int64  `json:"connects"`
	Protocol string `json:"protocol,omitempty"`
	Buffer   struct {
		Queued int   `json:"queued"`
		Bytes  int64 `json:"bytes"`
		// Dropped counts records the full policy discarded, over the
		// buffer's whole life; Refused those the broker refused.
		Dropped uint64 `json:"dropped"`
		Refused int64  `json:"refused"`
		Corrupt int64  `json:"corrupt_bytes"`
	} `json:"buffer"`
}

// Status returns the current status.
func (a *Agent) Status() Status {
	st := a.spool.Stats()
	var s Status
	s.Version = a.cfg.Version
	s.UptimeS = int64(time.Since(a.started).Seconds())
	s.Connects = a.connects.Load()
	a.mu.Lock()
	if a.session != nil {
		s.Protocol = string(a.session.Protocol())
	}
	a.mu.Unlock()
	s.Buffer.Queued, s.Buffer.Bytes, s.Buffer.Dropped, s.Buffer.Corrupt = st.Queued, st.Bytes, st.Dropped, st.Corrupt
	s.Buffer.Refused = a.refused.Load()
	return s
}

type statusCollector struct{ a *Agent }

func (c statusCollector) Collect(context.Context) (any, bool, error) { return c.a.Status(), false, nil }
