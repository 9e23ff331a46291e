package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/lastmile-dm/lastmile/third_party/mochi"
	"github.com/lastmile-dm/lastmile/third_party/mochi/packets"
)

// authTimeout bounds one CONNECT's authentication.
const authTimeout = 10 * time.Second

// conn is what the broker knows about one accepted connection.
type conn struct {
	principal *Principal
	id        uint64
	reason    atomic.Pointer[string] // why we closed it, when we did
}

// authHook authenticates CONNECTs, checks every PUBLISH and SUBSCRIBE
// against the principal's rules, and reports presence.
type authHook struct {
	mqtt.HookBase
	s       *Server
	limiter *rateLimiter
	nextID  atomic.Uint64

	mu    sync.RWMutex
	conns map[*mqtt.Client]*conn
	// byPrincipal finds the connections to kick.
	byPrincipal map[string]map[*mqtt.Client]struct{}
	// owner is the newest client per client ID: a taken-over connection is
	// no longer its owner, so its late hooks change nothing.
	owner map[string]*mqtt.Client
}

func newAuthHook(s *Server) *authHook {
	h := &authHook{s: s, conns: map[*mqtt.Client]*conn{}, byPrincipal: map[string]map[*mqtt.Client]struct{}{}, owner: map[string]*mqtt.Client{}}
	if r := s.cfg.Limits.ConnectRatePerIP; r > 0 {
		h.limiter = newRateLimiter(r, s.cfg.Limits.ConnectBurstPerIP, s.cfg.Now)
	}
	return h
}

func (h *authHook) ID() string { return "lastmile-auth" }

func (h *authHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck,
		mqtt.OnSessionEstablish, mqtt.OnSessionEstablished, mqtt.OnDisconnect}, []byte{b})
}

// refuse writes a CONNACK with the reason for err and returns the code.
func (h *authHook) refuse(cl *mqtt.Client, err error) error {
	v5, v3, label := connackCode(err)
	code := v5
	if cl.Properties.ProtocolVersion < 5 {
		code = v3
	}
	h.s.metrics.authFailures.WithLabelValues(label).Inc()
	h.s.log.Info("connection refused", "client", cl.ID, "remote", cl.Net.Remote, "reason", label, "error", err)
	_ = h.s.mochi.SendConnack(cl, code, false, nil)
	return v5
}

// connackCode maps an Authenticator error to MQTT 5 and 3.1.1 CONNACK codes.
func connackCode(err error) (v5, v3 packets.Code, label string) {
	switch {
	case errors.Is(err, ErrBadCredentials):
		return packets.ErrBadUsernameOrPassword, packets.ErrMalformedUsernameOrPassword, "bad_credentials"
	case errors.Is(err, ErrNotAuthorized):
		return packets.ErrNotAuthorized, packets.Err3NotAuthorized, "not_authorized"
	case errors.Is(err, ErrBanned):
		return packets.ErrBanned, packets.Err3NotAuthorized, "banned"
	case errors.Is(err, ErrClientIDInvalid):
		return packets.ErrClientIdentifierNotValid, packets.Err3ClientIdentifierNotValid, "client_id_invalid"
	case errors.Is(err, errRateLimited):
		return packets.ErrConnectionRateExceeded, packets.Err3ServerUnavailable, "rate_limited"
	default:
		return packets.ErrServerUnavailable, packets.Err3ServerUnavailable, "unavailable"
	}
}

var errRateLimited = errors.New("broker: connection rate exceeded")

// OnConnect authenticates. On refusal it sends the CONNACK itself.
func (h *authHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	h.s.tails.started(cl)
	if h.limiter != nil && !h.limiter.allow(hostOf(cl.Net.Remote)) {
		return h.refuse(cl, errRateLimited)
	}
	req := ConnectRequest{
		ClientID:        cl.ID,
		Username:        string(pk.Connect.Username),
		Password:        pk.Connect.Password,
		RemoteAddr:      cl.Net.Remote,
		Listener:        cl.Net.Listener,
		ProtocolVersion: cl.Properties.ProtocolVersion,
	}
	if tc, ok := cl.Net.Conn.(*tls.Conn); ok {
		if st := tc.ConnectionState(); len(st.PeerCertificates) > 0 {
			req.Cert = st.PeerCertificates[0]
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), authTimeout)
	p, err := h.s.cfg.Authenticator.Authenticate(ctx, req)
	cancel()
	if err == nil && p == nil {
		err = errors.New("authenticator returned no principal")
	}
	if err != nil {
		return h.refuse(cl, err)
	}
	// A will is a publish made later on the client's behalf: check it now.
	if pk.Connect.WillFlag && !p.CanPublish(pk.Connect.WillTopic) {
		h.s.metrics.aclDenials.WithLabelValues("will").Inc()
		return h.refuse(cl, ErrNotAuthorized)
	}
	if max := h.s.cfg.Limits.MaxKeepalive; max > 0 && cl.Properties.ProtocolVersion == 5 &&
		(cl.State.Keepalive == 0 || cl.State.Keepalive > max) {
		cl.State.Keepalive = max
		cl.State.ServerKeepalive = true
	}
	c := &conn{principal: p, id: h.nextID.Add(1)}
	h.mu.Lock()
	h.conns[cl] = c
	h.mu.Unlock()
	return nil
}

// OnConnectAuthenticate lets through what OnConnect accepted.
func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	return h.get(cl) != nil
}

func (h *authHook) get(cl *mqtt.Client) *conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.conns[cl]
}

// OnSessionEstablish runs before the session is inherited: from here on
// this client owns its ID.
func (h *authHook) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	c := h.get(cl)
	if c == nil {
		return
	}
	h.mu.Lock()
	h.owner[cl.ID] = cl
	set := h.byPrincipal[c.principal.ID]
	if set == nil {
		set = map[*mqtt.Client]struct{}{}
		h.byPrincipal[c.principal.ID] = set
	}
	set[cl] = struct{}{}
	h.mu.Unlock()
}

// persistentOwner reports whether cl is the current owner of its client ID;
// persistence ignores the hooks of connections that were taken over.
func (h *authHook) persistentOwner(cl *mqtt.Client) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	o, ok := h.owner[cl.ID]
	return !ok || o == cl
}

// OnSessionEstablished drops inherited subscriptions the principal may no
// longer hold (its rules changed while it was away) and records presence.
func (h *authHook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	h.s.settle(cl)
	c := h.get(cl)
	if c == nil {
		return
	}
	var revoked []packets.Subscription
	for f, sub := range cl.State.Subscriptions.GetAll() {
		if !c.principal.CanSubscribe(stripShare(f)) {
			revoked = append(revoked, sub)
		}
	}
	if len(revoked) > 0 {
		for _, sub := range revoked {
			h.s.mochi.Topics.Unsubscribe(sub.Filter, cl.ID)
			cl.State.Subscriptions.Delete(sub.Filter)
		}
		h.s.log.Info("dropped subscriptions no longer allowed", "client", cl.ID, "count", len(revoked))
		if h.s.persist != nil {
			h.s.persist.OnUnsubscribed(cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe}, Filters: revoked})
		}
	}
	h.s.metrics.connects.Inc()
	if h.s.cfg.Presence != nil {
		h.s.cfg.Presence.Connected(Session{
			ClientID: cl.ID, Principal: c.principal, ConnID: c.id,
			RemoteAddr: cl.Net.Remote, Listener: cl.Net.Listener,
			ProtocolVersion: cl.Properties.ProtocolVersion, Keepalive: cl.State.Keepalive,
			CleanStart: pk.Connect.Clean, ConnectedAt: h.s.cfg.Now(),
		})
	}
}

// OnDisconnect records the end of the connection.
func (h *authHook) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	h.mu.Lock()
	c := h.conns[cl]
	delete(h.conns, cl)
	if c != nil {
		if set := h.byPrincipal[c.principal.ID]; set != nil {
			delete(set, cl)
			if len(set) == 0 {
				delete(h.byPrincipal, c.principal.ID)
			}
		}
	}
	if h.owner[cl.ID] == cl {
		delete(h.owner, cl.ID)
	}
	h.mu.Unlock()
	if c == nil {
		return // refused at CONNECT, or restored from the store
	}
	h.s.metrics.disconnects.Inc()
	reason := disconnectReason(cl, err)
	if r := c.reason.Load(); r != nil {
		reason = *r
	}
	h.s.log.Debug("client disconnected", "client", cl.ID, "principal", c.principal.ID, "reason", reason)
	if h.s.cfg.Presence != nil {
		h.s.cfg.Presence.Disconnected(cl.ID, c.principal.ID, c.id, h.s.cfg.Now(), reason)
	}
}

func disconnectReason(cl *mqtt.Client, err error) string {
	cause := cl.StopCause()
	switch {
	case errors.Is(cause, packets.ErrSessionTakenOver):
		return "session taken over"
	case errors.Is(cause, packets.ErrServerShuttingDown):
		return "server shutting down"
	case err == nil:
		return "client disconnected"
	case errors.Is(err, io.EOF):
		return "connection closed by client"
	case strings.Contains(err.Error(), "i/o timeout"):
		return "keepalive timeout"
	default:
		return err.Error()
	}
}

// OnACLCheck checks a PUBLISH (write) or a SUBSCRIBE / delivery (read).
func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	c := h.get(cl)
	if c == nil {
		// A session restored from the store with nobody connected: its
		// subscriptions were checked when made and are checked again
		// when it reconnects, so queue for it.
		return !write
	}
	if write {
		if c.principal.CanPublish(topic) {
			return true
		}
		h.s.metrics.aclDenials.WithLabelValues("publish").Inc()
		h.s.log.Info("publish denied", "client", cl.ID, "principal", c.principal.ID, "topic", topic)
		return false
	}
	if c.principal.CanSubscribe(stripShare(topic)) {
		return true
	}
	h.s.metrics.aclDenials.WithLabelValues("subscribe").Inc()
	h.s.log.Info("subscribe denied", "client", cl.ID, "principal", c.principal.ID, "filter", topic)
	return false
}

// stripShare removes a "$share/{group}/" prefix.
func stripShare(f string) string {
	if rest, ok := strings.CutPrefix(f, "$share/"); ok {
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			return rest[i+1:]
		}
	}
	return f
}

func (h *authHook) clientsOf(principalID string) []*mqtt.Client {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]*mqtt.Client, 0, len(h.byPrincipal[principalID]))
	for cl := range h.byPrincipal[principalID] {
		out = append(out, cl)
	}
	return out
}

func (h *authHook) setReason(cl *mqtt.Client, reason string) {
	if c := h.get(cl); c != nil {
		c.reason.Store(&reason)
	}
}

// live counts connections whose disconnect has not been processed.
func (h *authHook) live() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.conns)
}
