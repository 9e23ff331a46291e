package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-dm/lastmile/broker"
	"github.com/lastmile-dm/lastmile/dm/shadow"
	"github.com/lastmile-dm/lastmile/dm/topic"
)

// This file connects device shadows to MQTT: the platform subscribes to
// every device's shadow requests (topic.ShadowRequestFilters), hands each to a worker
// (never working on the publisher's goroutine), and publishes the
// responses (QoS 1) on the device's .../accepted, .../rejected,
// .../update/delta and .../update/documents topics.
//
//	device PUBLISH ──> handle (publisher's goroutine: parse topic, check
//	                   identity, count in-flight per connection → 429)
//	                     │ dispatch: a shadow with a request running queues
//	                     v the new one behind it (in order); else ready
//	                   worker ──> shadow.Service ──> PublishMessage
//	                     └─> then the shadow's next queued request, if any
//	SUBSCRIBE/resume ──> Subscribed ──> dispatch: publish the current delta
//	                                    of every shadow the filters cover
//
// Requests of one shadow run one at a time, in order; requests of
// different shadows never wait behind each other (a fixed shard per shadow
// made every shadow hashed to a busy shard wait for the others' fsyncs).

// Workers mostly wait on the store (an fsync, a Redis round trip), so
// there are many: concurrent embedded writes share one group-committed
// fsync, concurrent Redis calls share the connection pool.
const (
	shadowWorkers = 256
	// shadowReady bounds the shadows waiting for a worker, and
	// shadowQueueLen the requests queued behind one shadow's running one;
	// beyond either, a request gets 429.
	shadowReady      = 16384
	shadowQueueLen   = 256
	shadowReqTimeout = 10 * time.Second
)

type shadowJob struct {
	key string // device ID + "/" + shadow name
	st  topic.ShadowTopic
	msg broker.Message
	// resync: publish the deltas that filters cover (st.DeviceID only).
	resync  bool
	filters []string
}

// shadowBridge serves shadow requests over MQTT.
type shadowBridge struct {
	svc *shadow.Service
	pub interface {
		PublishMessage(broker.Message) error
		HasSubscribers(topic string) bool
	}
	log *slog.Logger
	now func() time.Time

	ready  chan *shadowJob
	done   chan struct{}
	wg     sync.WaitGroup
	ctx    context.Context
	stop   context.CancelFunc
	cancel func() // the platform subscription
	closed sync.Once

	// deadline is the context requests run under (see reqCtx); dmu
	// serialises its renewal.
	deadline atomic.Pointer[sharedDeadline]
	dmu      sync.Mutex

	mu       sync.Mutex
	inflight map[string]int // client ID -> requests queued or running

	// kmu guards running: a shadow key is present while one of its
	// requests is ready or running, with the requests queued behind it.
	kmu     sync.Mutex
	running map[string][]*shadowJob

	requests *prometheus.CounterVec
}

var (
	_ broker.SubscriptionSink = (*shadowBridge)(nil)
	_ shadow.Notifier         = (*shadowBridge)(nil)
)

// setupShadows builds the shadow service and its MQTT side; called once
// from New after the broker exists.
func (n *Node) setupShadows(logger *slog.Logger) error {
	c := n.cfg.Shadow
	svc, err := shadow.New(shadow.Config{Store: n.store, Devices: n.store, Logger: logger,
		Limits: shadow.Limits{MaxDocumentBytes: c.MaxDocumentBytes, MaxDepth: c.MaxDepth, MaxInFlight: c.MaxInFlight, MaxNamedShadows: c.MaxNamedShadows}})
	if err != nil {
		return err
	}
	b := &shadowBridge{svc: svc, pub: n.broker, log: logger.With("component", "shadow-mqtt"), now: time.Now,
		ready: make(chan *shadowJob, shadowReady), done: make(chan struct{}), inflight: map[string]int{}, running: map[string][]*shadowJob{}}
	b.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lastmile_shadow_requests_total",
		Help: "Shadow requests over MQTT by operation and outcome code (200 accepted, else the rejection code).",
	}, []string{"op", "code"})
	if err := n.metrics.Register(b.requests); err != nil {
		return fmt.Errorf("shadow metrics: %w", err)
	}
	b.ctx, b.stop = context.WithCancel(context.Background())
	for range shadowWorkers {
		b.wg.Add(1)
		go b.work()
	}
	var cancels []func()
	b.cancel = func() {
		for _, c := range cancels {
			c()
		}
	}
	for _, f := range topic.ShadowRequestFilters {
		c, err := n.broker.Subscribe(f, b.handle)
		if err != nil {
			b.close()
			return err
		}
		cancels = append(cancels, c)
	}
	n.subs.Add(b)
	svc.AddNotifier(b)
	if n.events != nil {
		svc.AddNotifier(shadowEvents{bus: n.events})
	}
	n.shadows, n.shadowBridge = svc, b
	return nil
}

// close stops taking requests and waits for the workers; queued requests
// are dropped (devices retry on no answer, as with any lost QoS 0 reply).
func (b *shadowBridge) close() {
	b.closed.Do(func() {
		if b.cancel != nil {
			b.cancel()
		}
		close(b.done)
		b.stop()
		b.wg.Wait()
	})
}

// dispatch queues j behind its shadow's running request, or hands it to
// the workers; false when the queue or the workers' backlog is full.
func (b *shadowBridge) dispatch(j *shadowJob) bool {
	j.key = j.st.DeviceID + "/" + j.st.Name
	b.kmu.Lock()
	defer b.kmu.Unlock()
	if q, busy := b.running[j.key]; busy {
		if len(q) >= shadowQueueLen {
			return false
		}
		b.running[j.key] = append(q, j)
		return true
	}
	select {
	case b.ready <- j:
		b.running[j.key] = nil
		return true
	default:
		return false
	}
}

// next returns the request queued behind the one of key that finished,
// or nil, and then key is idle.
func (b *shadowBridge) next(key string) *shadowJob {
	b.kmu.Lock()
	defer b.kmu.Unlock()
	q := b.running[key]
	if len(q) == 0 {
		delete(b.running, key)
		return nil
	}
	j := q[0]
	q[0] = nil
	b.running[key] = q[1:]
	return j
}

// handle runs on the publisher's goroutine: it must not block.
func (b *shadowBridge) handle(m broker.Message) {
	st, ok := topic.ParseShadowRequest(m.Topic)
	if !ok || m.ClientID == "" {
		return // a response or notification (ours), or not a request
	}
	// The broker's ACL already confined devices to their own namespace and
	// applications to their role's topics; this is the domain's own check.
	if m.PrincipalID != st.DeviceID && !strings.HasPrefix(m.PrincipalID, "app:") {
		b.log.Warn("shadow request from a client that is not the device", "device", st.DeviceID, "client", m.ClientID, "principal", m.PrincipalID)
		b.requests.WithLabelValues(st.Op, "403").Inc()
		return
	}
	if !b.acquire(m.ClientID) {
		b.reject(st, m, fmt.Errorf("%w: more than %d requests of this connection are in flight", shadow.ErrTooManyRequests, b.svc.Limits().MaxInFlight), peekToken(m.Payload))
		return
	}
	m.Payload = append([]byte(nil), m.Payload...)
	m.CorrelationData = append([]byte(nil), m.CorrelationData...)
	if !b.dispatch(&shadowJob{st: st, msg: m}) {
		b.release(m.ClientID)
		b.reject(st, m, fmt.Errorf("%w: the server is busy, retry later", shadow.ErrTooManyRequests), peekToken(m.Payload))
	}
}

func (b *shadowBridge) acquire(clientID string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.inflight[clientID] >= b.svc.Limits().MaxInFlight {
		return false
	}
	b.inflight[clientID]++
	return true
}

func (b *shadowBridge) release(clientID string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.inflight[clientID] <= 1 {
		delete(b.inflight, clientID)
		return
	}
	b.inflight[clientID]--
}

// peekToken reads the clientToken of a request that is rejected unparsed.
func peekToken(payload []byte) string {
	var v struct {
		ClientToken string `json:"clientToken"`
	}
	if len(payload) > shadow.DefaultMaxDocumentBytes*8 || json.Unmarshal(payload, &v) != nil || len(v.ClientToken) > shadow.MaxClientTokenLen {
		return ""
	}
	return v.ClientToken
}

// Subscribed sends a device that subscribes (or resumes a session) the
// current delta of each of its shadows whose delta topic it now holds, so
// a device that was offline learns what changed meanwhile.
func (b *shadowBridge) Subscribed(clientID, principalID string, filters []string, _ bool) {
	if principalID == "" || principalID != clientID || !topic.ValidDeviceID(principalID) {
		return // devices only
	}
	prefix := topic.Platform(principalID) + "/"
	var mine []string
	for _, f := range filters {
		rest, ok := strings.CutPrefix(f, prefix)
		if ok && (rest == "#" || strings.HasPrefix(rest, "+/") || strings.HasPrefix(rest, "shadow/")) {
			mine = append(mine, f)
		}
	}
	if len(mine) == 0 {
		return
	}
	if !b.dispatch(&shadowJob{st: topic.ShadowTopic{DeviceID: principalID}, resync: true, filters: mine}) {
		b.log.Warn("shadow queue full: no delta sent on subscribe", "device", principalID)
	}
}

// work runs ready requests, and after each the next one queued behind it
// for the same shadow, until the bridge closes.
func (b *shadowBridge) work() {
	defer b.wg.Done()
	for {
		select {
		case <-b.done:
			return
		case j := <-b.ready:
			for ; j != nil; j = b.next(j.key) {
				if j.resync {
					b.resync(j.st.DeviceID, j.filters)
					continue
				}
				b.serve(j)
				b.release(j.msg.ClientID)
				select {
				case <-b.done:
					return
				default:
				}
			}
		}
	}
}

// sharedDeadline is a context with a deadline that requests started
// before renew share.
type sharedDeadline struct {
	ctx   context.Context
	renew time.Time
	// cancel is never called: the context's own timer releases it at its
	// deadline, when no request can still be using it.
	cancel context.CancelFunc
}

// reqCtx returns the context for a request: the bridge's, with a deadline
// between shadowReqTimeout and a second more away. Requests started in
// the same second share it rather than each arming and stopping a timer
// of its own, which cost 3% of the CPU of a shadow update.
func (b *shadowBridge) reqCtx() context.Context {
	now := time.Now()
	if d := b.deadline.Load(); d != nil && now.Before(d.renew) {
		return d.ctx
	}
	b.dmu.Lock()
	defer b.dmu.Unlock()
	if d := b.deadline.Load(); d != nil && now.Before(d.renew) {
		return d.ctx
	}
	d := &sharedDeadline{renew: now.Add(time.Second)}
	d.ctx, d.cancel = context.WithDeadline(b.ctx, now.Add(shadowReqTimeout+time.Second)) //nolint:gosec // released by its own timer (see sharedDeadline.cancel) or when b.ctx ends
	b.deadline.Store(d)
	return d.ctx
}

func (b *shadowBridge) serve(j *shadowJob) {
	ctx := b.reqCtx()
	st, m, lim := j.st, j.msg, b.svc.Limits()
	var err error
	var token string
	switch st.Op {
	case topic.ShadowGet:
		var r *shadow.Request
		if r, err = shadow.ParseRequest(m.Payload, lim); err == nil {
			var d *shadow.Document
			if d, err = b.svc.Get(ctx, st.DeviceID, st.Name); err == nil {
				b.respond(st, m, topic.ShadowAccepted, shadow.GetAccepted(d, r.ClientToken))
				if p := shadow.DeltaPayload(d, r.ClientToken); p != nil {
					b.publish(topic.ShadowDeltaTopic(st.DeviceID, st.Name), m, p)
				}
			}
		}
		token = r.ClientToken
	case topic.ShadowUpdate:
		var u *shadow.Update
		if u, err = shadow.ParseUpdate(m.Payload, lim); err == nil {
			var res *shadow.Result
			if res, err = b.svc.Update(ctx, st.DeviceID, st.Name, u); err == nil {
				b.respond(st, m, topic.ShadowAccepted, shadow.UpdateAccepted(u, res))
				// documents and delta went out from ShadowChanged (for API
				// updates too).
			}
		}
		token = u.ClientToken
	case topic.ShadowDelete:
		var r *shadow.Request
		if r, err = shadow.ParseRequest(m.Payload, lim); err == nil {
			var d *shadow.Document
			if d, err = b.svc.Delete(ctx, st.DeviceID, st.Name, r.Version); err == nil {
				b.respond(st, m, topic.ShadowAccepted, shadow.DeleteAccepted(d, b.now(), r.ClientToken))
			}
		}
		token = r.ClientToken
	}
	if err != nil {
		b.reject(st, m, err, token)
		return
	}
	b.requests.WithLabelValues(st.Op, "200").Inc()
}

func (b *shadowBridge) reject(st topic.ShadowTopic, m broker.Message, err error, token string) {
	code, _ := shadow.Code(err)
	if code == 500 {
		b.log.Error("shadow request failed", "device", st.DeviceID, "shadow", st.Name, "op", st.Op, "error", err)
	} else {
		b.log.Debug("shadow request rejected", "device", st.DeviceID, "shadow", st.Name, "op", st.Op, "code", code, "error", err)
	}
	b.requests.WithLabelValues(st.Op, strconv.Itoa(code)).Inc()
	b.respond(st, m, topic.ShadowRejected, shadow.Rejected(err, b.now(), token))
}

func (b *shadowBridge) respond(st topic.ShadowTopic, req broker.Message, kind string, payload []byte) {
	b.publish(topic.ShadowResponse(st.DeviceID, st.Name, st.Op, kind), req, payload)
}

// publish sends a response; an MQTT 5 requester gets its correlation data
// back.
func (b *shadowBridge) publish(to string, req broker.Message, payload []byte) {
	err := b.pub.PublishMessage(broker.Message{Topic: to, Payload: payload, QoS: 1,
		CorrelationData: req.CorrelationData, ContentType: "application/json"})
	if err != nil && !errors.Is(err, broker.ErrNotStarted) {
		b.log.Warn("publish shadow response", "topic", to, "error", err)
	}
}

// ShadowChanged publishes update/documents after every accepted update,
// and the delta when one is left, whoever made the update (a device over
// MQTT or the API). It runs under the shadow's write lock, so they go out
// in version order; PublishMessage only queues to the subscribers'
// connections. A topic nobody subscribes to is skipped before its payload
// is built: most devices only report, and encoding documents for nobody
// was a tenth of the server's CPU per update.
func (b *shadowBridge) ShadowChanged(c shadow.Change) {
	if c.Deleted {
		return
	}
	tok := c.Document.ClientToken
	if to := topic.ShadowResponse(c.DeviceID, c.Name, topic.ShadowUpdate, topic.ShadowDocuments); b.pub.HasSubscribers(to) {
		b.publish(to, broker.Message{}, c.Documents(tok))
	}
	if c.Delta != nil {
		if to := topic.ShadowDeltaTopic(c.DeviceID, c.Name); b.pub.HasSubscribers(to) {
			if p := shadow.DeltaPayload(c.Document, tok); p != nil {
				b.publish(to, broker.Message{}, p)
			}
		}
	}
}

func (b *shadowBridge) resync(deviceID string, filters []string) {
	ctx := b.reqCtx()
	names, err := b.svc.List(ctx, deviceID)
	if err != nil {
		b.log.Warn("list shadows for delta on subscribe", "device", deviceID, "error", err)
		return
	}
	for _, name := range names {
		to := topic.ShadowDeltaTopic(deviceID, name)
		covered := false
		for _, f := range filters {
			if topic.Match(f, to) {
				covered = true
				break
			}
		}
		if !covered {
			continue
		}
		d, err := b.svc.Get(ctx, deviceID, name)
		if err != nil {
			if !errors.Is(err, shadow.ErrNotFound) {
				b.log.Warn("read shadow for delta on subscribe", "device", deviceID, "shadow", name, "error", err)
			}
			continue
		}
		if p := shadow.DeltaPayload(d, ""); p != nil {
			b.publish(to, broker.Message{}, p)
		}
	}
}
