package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/lastmile-dm/lastmile/agent/backoff"
	"github.com/lastmile-dm/lastmile/agent/config"
	"github.com/lastmile-dm/lastmile/agent/conn"
	"github.com/lastmile-dm/lastmile/dm/topic"
)

// ServerControl is the part of *Agent that config push moves: the
// connection settings, and a reconnect that tries them now.
type ServerControl interface {
	Server() config.ServerConfig
	SetServer(config.ServerConfig)
	Reconnect()
}

var _ ServerControl = (*Agent)(nil)

// ConfigPush is the commit-confirmed config-apply capability
// (docs/config-push.md):
//
//	document ──> report received ──> save pending (previous settings,
//	   deadline) ──> handler program (apply) ──> built-in: server address
//	   ──> Reconnect ──> Connected: report awaiting_confirm
//	confirm (same hash) ──> commit: current := new ──> report applied
//	deadline passes ──> handler program (rollback, previous file),
//	   previous server ──> Reconnect ──> Connected: report rolled_back
//
// The pending state is written to Dir before anything changes, so an
// agent that restarts in the middle resumes the wait (and rolls back when
// the deadline has passed meanwhile). A document that failed or was rolled
// back is not applied again: the device answers the platform with the
// earlier outcome until a different document comes.
type ConfigPush struct {
	DeviceID string
	// Dir holds state.json and the documents.
	Dir string
	// ConfirmTimeout is the commit-confirmed window.
	ConfirmTimeout time.Duration
	// Program applies documents (optional): argv plus the document's path.
	Program        []string
	ProgramTimeout time.Duration
	// Control moves the agent's connection (the built-in handler).
	Control ServerControl
	Clock   backoff.Clock
	Logger  *slog.Logger

	mu sync.Mutex
	st pushState
	// conns counts connections; a pending document applied during
	// connection n is confirmed only on a later one (the point of the
	// confirmation is that the new settings reach the platform).
	conns     int
	appliedAt int
	base      config.ServerConfig // the configuration file's settings
	timer     backoff.Timer
	half      backoff.Timer
	disarm    chan struct{}
}

var _ Capability = (*ConfigPush)(nil)

// pushState is what survives a restart (Dir/state.json).
type pushState struct {
	// Committed is the document in force (nil: none pushed yet).
	Committed *topic.ConfigRef `json:"committed,omitempty"`
	// Server overrides the configuration file's server settings.
	Server *config.ServerConfig `json:"server,omitempty"`
	// Pending is a document applied and waiting for confirmation.
	Pending *pending `json:"pending,omitempty"`
	// Refused maps the hashes that failed or were rolled back to the
	// report that was made.
	Refused map[string]topic.ConfigStatusPayload `json:"refused,omitempty"`
	// Unreported is a final report not yet delivered.
	Unreported *topic.ConfigStatusPayload `json:"unreported,omitempty"`
}

type pending struct {
	Ref      topic.ConfigRef      `json:"ref"`
	Format   string               `json:"format"`
	Deadline time.Time            `json:"deadline"`
	PrevSrv  *config.ServerConfig `json:"prev_server,omitempty"`
	Program  bool                 `json:"program,omitempty"`
}

// maxRefused bounds the remembered refused documents.
const maxRefused = 32

const (
	stateFile   = "state.json"
	currentFile = "current"
	nextFile    = "next"
)

func (c *ConfigPush) log() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// Start loads the saved state, puts back the server settings a committed
// or pending document chose, and resumes a pending confirmation wait. Call
// it once, before the agent runs.
func (c *ConfigPush) Start() error {
	if c.Clock == nil {
		c.Clock = backoff.RealClock{}
	}
	if c.ConfirmTimeout <= 0 {
		c.ConfirmTimeout = 120 * time.Second
	}
	if c.ProgramTimeout <= 0 {
		c.ProgramTimeout = time.Minute
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return fmt.Errorf("config push: %w", err)
	}
	c.base = c.Control.Server()
	b, err := os.ReadFile(filepath.Join(c.Dir, stateFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("config push: %w", err)
	default:
		if err := json.Unmarshal(b, &c.st); err != nil {
			// A torn state file must not stop the agent from connecting
			// with its own configuration.
			c.log().Error("config push state unreadable; starting from the configuration file", "err", err)
			c.st = pushState{}
		}
	}
	if c.st.Server != nil {
		c.Control.SetServer(*c.st.Server)
	}
	if p := c.st.Pending; p != nil {
		left := max(p.Deadline.Sub(c.Clock.Now()), 0)
		c.log().Info("config awaiting confirmation after a restart", "profile", p.Ref.Profile, "version", p.Ref.Version, "left", left)
		c.arm(p.Ref.Hash, left)
	}
	return nil
}

// Filters subscribes to the platform's config messages.
func (c *ConfigPush) Filters(id string) []string { return []string{topic.ConfigDeviceFilter(id)} }

// Connected delivers an outcome that waited for a connection, asks for
// the confirmation of a pending document, and asks for the document the
// platform has for this device.
func (c *ConfigPush) Connected(ctx context.Context, p Publisher, _ conn.Protocol) {
	c.mu.Lock()
	c.conns++
	un, pend := c.st.Unreported, c.st.Pending
	c.log().Debug("config push connected", "connection", c.conns, "pending", pend != nil, "unreported", un != nil)
	c.mu.Unlock()
	if un != nil && c.send(ctx, p, *un) {
		c.mu.Lock()
		if c.st.Unreported == un {
			c.st.Unreported = nil
			c.save()
		}
		c.mu.Unlock()
	}
	if pend != nil {
		c.send(ctx, p, topic.ConfigStatusPayload{ConfigRef: pend.Ref, State: topic.ConfigAwaitingConfirm})
		return // the document is fetched again once this one is settled
	}
	c.publish(ctx, p, topic.ConfigTopic(c.DeviceID, topic.ConfigGet), []byte("{}"))
}

// Handle takes a document or a confirmation.
func (c *ConfigPush) Handle(ctx context.Context, m conn.Message, p Publisher) {
	_, kind, ok := topic.ParseConfigTopic(m.Topic)
	if !ok {
		return
	}
	switch kind {
	case topic.ConfigDocument:
		d, err := topic.ParseConfigDocument(m.Payload)
		if err != nil {
			c.log().Warn("unreadable config document; ignored", "err", err)
			return
		}
		c.document(ctx, d, p)
	case topic.ConfigConfirm:
		cf, err := topic.ParseConfigConfirm(m.Payload)
		if err != nil {
			c.log().Warn("unreadable config confirmation; ignored", "err", err)
			return
		}
		c.confirm(ctx, cf.ConfigRef, p)
	}
}

func (c *ConfigPush) document(ctx context.Context, d topic.ConfigDocumentPayload, p Publisher) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.st.Pending != nil:
		if c.st.Pending.Ref.Hash == d.Hash && c.conns > c.appliedAt {
			c.sendLocked(ctx, p, topic.ConfigStatusPayload{ConfigRef: c.st.Pending.Ref, State: topic.ConfigAwaitingConfirm})
		}
		return
	case c.st.Committed != nil && c.st.Committed.Hash == d.Hash:
		c.st.Committed = &d.ConfigRef
		c.save()
		c.sendLocked(ctx, p, topic.ConfigStatusPayload{ConfigRef: d.ConfigRef, State: topic.ConfigApplied})
		return
	}
	if r, ok := c.st.Refused[d.Hash]; ok {
		r.ConfigRef = d.ConfigRef
		c.sendLocked(ctx, p, r)
		return
	}
	if topic.ConfigHash([]byte(d.Content)) != d.Hash {
		c.refuse(ctx, p, d.ConfigRef, topic.ConfigFailed, "the document does not match its hash")
		return
	}
	log := c.log().With("profile", d.Profile, "version", d.Version, "rollout", d.Rollout)
	log.Info("config document received")
	c.sendLocked(ctx, p, topic.ConfigStatusPayload{ConfigRef: d.ConfigRef, State: topic.ConfigReceived})

	next := filepath.Join(c.Dir, nextFile+"."+d.Format)
	if err := writeFileSync(next, []byte(d.Content)); err != nil {
		c.refuse(ctx, p, d.ConfigRef, topic.ConfigFailed, "save the document: "+err.Error())
		return
	}
	srv, hasSrv, err := builtinServer(d.Format, d.Content, c.Control.Server())
	if err != nil {
		c.refuse(ctx, p, d.ConfigRef, topic.ConfigFailed, err.Error())
		return
	}
	if !hasSrv && len(c.Program) == 0 {
		c.refuse(ctx, p, d.ConfigRef, topic.ConfigFailed, "no handler for this document: it sets no lastmile_agent.server and config_push.handler is not configured")
		return
	}
	// Save the way back before changing anything.
	pend := &pending{Ref: d.ConfigRef, Format: d.Format, Deadline: c.Clock.Now().Add(c.ConfirmTimeout), PrevSrv: c.st.Server, Program: len(c.Program) > 0}
	c.st.Pending = pend
	if !c.save() {
		c.st.Pending = nil
		c.refuse(ctx, p, d.ConfigRef, topic.ConfigFailed, "cannot save the pending state")
		return
	}
	if pend.Program {
		if err := c.run(ctx, "apply", next, d.ConfigRef, d.Format); err != nil {
			// The program may have changed part of the system: have it
			// restore the previous document, as on a rollback.
			c.runRollback(ctx, pend)
			c.st.Pending = nil
			c.refuse(ctx, p, d.ConfigRef, topic.ConfigFailed, "handler: "+err.Error())
			return
		}
	}
	if hasSrv {
		c.st.Server = &srv
		c.Control.SetServer(srv)
		log.Info("config moves the connection", "address", srv.Address)
	}
	c.save()
	c.appliedAt = c.conns
	c.arm(d.Hash, c.ConfirmTimeout)
	log.Info("config applied; reconnecting to wait for the platform's confirmation", "window", c.ConfirmTimeout)
	c.Control.Reconnect()
}

func (c *ConfigPush) confirm(ctx context.Context, ref topic.ConfigRef, p Publisher) {
	c.mu.Lock()
	pend := c.st.Pending
	if pend == nil || pend.Ref.Hash != ref.Hash || c.conns <= c.appliedAt {
		c.log().Debug("config confirmation ignored", "pending", pend != nil, "connection", c.conns, "applied_on", c.appliedAt)
		c.mu.Unlock()
		return // not ours, or it reached us on the connection that predates the apply
	}
	c.stopTimer()
	for _, f := range []string{"json", "yaml", "text"} { // one current document, whatever its format
		_ = os.Remove(filepath.Join(c.Dir, currentFile+"."+f))
	}
	if err := os.Rename(filepath.Join(c.Dir, nextFile+"."+pend.Format), filepath.Join(c.Dir, currentFile+"."+pend.Format)); err != nil {
		c.log().Warn("keep the confirmed document", "err", err)
	}
	c.st.Committed, c.st.Pending = &pend.Ref, nil
	c.save()
	c.log().Info("config confirmed by the platform", "profile", pend.Ref.Profile, "version", pend.Ref.Version)
	c.sendLocked(ctx, p, topic.ConfigStatusPayload{ConfigRef: pend.Ref, State: topic.ConfigApplied})
	c.mu.Unlock()
	// A newer document may have been assigned meanwhile.
	c.publish(ctx, p, topic.ConfigTopic(c.DeviceID, topic.ConfigGet), []byte("{}"))
}

// arm starts the confirmation timer of hash. Called with mu held (or
// before the agent runs). Halfway through the window, a device that did
// connect with the new settings but got no confirmation reconnects once:
// a confirmation lost on the way (a dropped message, a subscription the
// broker lost in a fast reconnect) gets a second chance before the
// rollback; a device that cannot connect is not affected.
func (c *ConfigPush) arm(hash string, d time.Duration) {
	c.stopTimer()
	t, half := c.Clock.NewTimer(d), c.Clock.NewTimer(d/2)
	stop := make(chan struct{})
	c.timer, c.half, c.disarm = t, half, stop
	go func() {
		select {
		case <-half.C():
			c.retry(hash)
		case <-t.C():
			half.Stop()
			c.expire(hash, d)
			return
		case <-stop:
			return
		}
		select {
		case <-t.C():
			c.expire(hash, d)
		case <-stop:
		}
	}()
}

func (c *ConfigPush) stopTimer() {
	if c.timer != nil {
		c.timer.Stop()
		c.half.Stop()
		close(c.disarm)
		c.timer, c.half, c.disarm = nil, nil, nil
	}
}

// retry reconnects once when the new settings connected but no
// confirmation came in the first half of the window.
func (c *ConfigPush) retry(hash string) {
	c.mu.Lock()
	pend := c.st.Pending
	again := pend != nil && pend.Ref.Hash == hash && c.conns > c.appliedAt
	c.mu.Unlock()
	if again {
		c.log().Info("no config confirmation yet; reconnecting once to ask again", "profile", pend.Ref.Profile, "version", pend.Ref.Version)
		c.Control.Reconnect()
	}
}

// expire rolls back the pending document of hash.
func (c *ConfigPush) expire(hash string, waited time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pend := c.st.Pending
	if pend == nil || pend.Ref.Hash != hash {
		return
	}
	c.half.Stop()
	c.timer, c.half, c.disarm = nil, nil, nil
	reason := fmt.Sprintf("no confirmation from the platform within %s of applying; the previous configuration was restored", c.ConfirmTimeout)
	if waited < c.ConfirmTimeout {
		reason = fmt.Sprintf("no confirmation from the platform within %s of applying (the agent restarted meanwhile); the previous configuration was restored", c.ConfirmTimeout)
	}
	c.log().Warn("config not confirmed: rolling back", "profile", pend.Ref.Profile, "version", pend.Ref.Version)
	ctx, cancel := context.WithTimeout(context.Background(), c.ProgramTimeout+time.Second)
	defer cancel()
	c.runRollback(ctx, pend)
	c.st.Server = pend.PrevSrv
	c.st.Pending = nil
	r := topic.ConfigStatusPayload{ConfigRef: pend.Ref, State: topic.ConfigRolledBack, Reason: reason}
	c.remember(r)
	c.st.Unreported = &r
	c.save()
	srv := c.base
	if pend.PrevSrv != nil {
		srv = *pend.PrevSrv
	}
	c.Control.SetServer(srv)
	c.Control.Reconnect()
}

// runRollback has the program restore the previous document, if the
// program applied the pending one.
func (c *ConfigPush) runRollback(ctx context.Context, pend *pending) {
	if !pend.Program || len(c.Program) == 0 {
		return
	}
	prev := ""
	if c.st.Committed != nil {
		for _, f := range []string{"json", "yaml", "text"} {
			path := filepath.Join(c.Dir, currentFile+"."+f)
			if _, err := os.Stat(path); err == nil {
				prev = path
				break
			}
		}
	}
	if err := c.run(ctx, "rollback", prev, pend.Ref, pend.Format); err != nil {
		c.log().Error("config handler could not roll back", "err", err)
	}
}

// refuse reports a final failure and remembers it. Called with mu held.
func (c *ConfigPush) refuse(ctx context.Context, p Publisher, ref topic.ConfigRef, state, reason string) {
	c.log().Warn("config refused", "profile", ref.Profile, "version", ref.Version, "reason", reason)
	r := topic.ConfigStatusPayload{ConfigRef: ref, State: state, Reason: reason}
	c.remember(r)
	c.save()
	c.sendLocked(ctx, p, r)
}

func (c *ConfigPush) remember(r topic.ConfigStatusPayload) {
	if c.st.Refused == nil {
		c.st.Refused = map[string]topic.ConfigStatusPayload{}
	}
	if len(c.st.Refused) >= maxRefused {
		for k := range c.st.Refused {
			delete(c.st.Refused, k)
			break
		}
	}
	c.st.Refused[r.Hash] = r
}

// run executes the handler program.
func (c *ConfigPush) run(ctx context.Context, action, file string, ref topic.ConfigRef, format string) error {
	ctx, cancel := context.WithTimeout(ctx, c.ProgramTimeout)
	defer cancel()
	argv := append(append([]string(nil), c.Program...), file)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...) //nolint:gosec // the operator's configured program
	cmd.Env = append(os.Environ(), "LASTMILE_CONFIG_ACTION="+action, "LASTMILE_CONFIG_PROFILE="+ref.Profile,
		"LASTMILE_CONFIG_VERSION="+strconv.FormatInt(ref.Version, 10), "LASTMILE_CONFIG_FORMAT="+format, "LASTMILE_CONFIG_HASH="+ref.Hash)
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := string(out)
		if len(msg) > 512 {
			msg = msg[:512]
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s timed out after %s", action, c.ProgramTimeout)
		}
		return fmt.Errorf("%s: %w: %s", action, err, msg)
	}
	return nil
}

// save writes the state; false if it could not. Called with mu held.
func (c *ConfigPush) save() bool {
	b, err := json.Marshal(&c.st)
	if err == nil {
		err = writeFileSync(filepath.Join(c.Dir, stateFile), b)
	}
	if err != nil {
		c.log().Error("save config push state", "err", err)
		return false
	}
	return true
}

func (c *ConfigPush) send(ctx context.Context, p Publisher, s topic.ConfigStatusPayload) bool {
	b, err := json.Marshal(s)
	if err != nil {
		return false
	}
	return c.publish(ctx, p, topic.ConfigTopic(c.DeviceID, topic.ConfigStatus), b)
}

func (c *ConfigPush) sendLocked(ctx context.Context, p Publisher, s topic.ConfigStatusPayload) {
	if !c.send(ctx, p, s) && (s.State == topic.ConfigApplied || s.State == topic.ConfigFailed || s.State == topic.ConfigRolledBack) {
		c.st.Unreported = &s
		c.save()
	}
}

func (c *ConfigPush) publish(ctx context.Context, p Publisher, to string, b []byte) bool {
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p.Publish(pctx, conn.Outgoing{Topic: to, Payload: b, QoS: 1}); err != nil {
		c.log().Warn("config message not delivered", "topic", to, "err", err)
		return false
	}
	return true
}

// builtinServer reads lastmile_agent.server from a JSON or YAML document:
// {"lastmile_agent": {"server": {"address": "host:port", "keepalive": "30s"}}}.
// It returns cur with those settings replaced.
func builtinServer(format, content string, cur config.ServerConfig) (config.ServerConfig, bool, error) {
	if format != "json" && format != "yaml" {
		return cur, false, nil
	}
	var doc struct {
		Agent *struct {
			Server *struct {
				Address   string `yaml:"address"`
				Keepalive string `yaml:"keepalive"`
			} `yaml:"server"`
		} `yaml:"lastmile_agent"`
	}
	if err := yaml.Unmarshal([]byte(content), &doc); err != nil {
		return cur, false, fmt.Errorf("document is not %s: %w", format, err)
	}
	if doc.Agent == nil || doc.Agent.Server == nil {
		return cur, false, nil
	}
	s := doc.Agent.Server
	if s.Address != "" {
		if _, port, err := net.SplitHostPort(s.Address); err != nil || port == "" {
			return cur, false, fmt.Errorf("lastmile_agent.server.address %q is not host:port", s.Address)
		}
		cur.Address = s.Address
	}
	if s.Keepalive != "" {
		d, err := time.ParseDuration(s.Keepalive)
		if err != nil || d < time.Second || d > 65535*time.Second {
			return cur, false, fmt.Errorf("lastmile_agent.server.keepalive %q is not a duration within 1s..18h", s.Keepalive)
		}
		cur.Keepalive = d
	}
	return cur, true, nil
}

// writeFileSync replaces path atomically and durably.
func writeFileSync(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err = f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
