package broker

import (
	"bytes"
	"math"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/lastmile-dm/lastmile/third_party/mochi"
	"github.com/lastmile-dm/lastmile/third_party/mochi/packets"
)

// Slow-consumer policies (Limits.SlowConsumerPolicy).
const (
	// SlowConsumerDrop keeps a slow client connected: QoS 0 messages that
	// do not fit its write buffer are dropped, QoS >= 1 messages wait in
	// its session queue until that is full, then are dropped. Every drop is
	// counted.
	SlowConsumerDrop = "drop"
	// SlowConsumerDisconnect closes a client whose session queue is full; a
	// persistent session keeps its queue for the reconnect.
	SlowConsumerDisconnect = "disconnect"
)

// Reasons a delivery is dropped, the label of
// lastmile_broker_deliveries_dropped_total.
//
//nolint:gosec // G101: metric labels, not credentials
const (
	dropWriteBuffer = "write_buffer_full" // QoS 0, client not reading fast enough
	dropQueueFull   = "session_queue_full"
	dropPacketIDs   = "packet_ids_exhausted"
	// dropWriteBacklog closes a connection: see backlogConn.
	dropWriteBacklog = "write_backlog_full"
)

// deliveryHook makes a full write buffer safe and a slow consumer
// harmless.
//
// The mochi fork writes each outgoing PUBLISH from the publisher's
// goroutine to the client's non-blocking connection (backlogConn); once
// Limits.MaxPendingWrites packets have been written while the socket was
// refusing bytes, the client's write buffer is full and mochi drops the
// packet — for QoS >= 1 too, after rolling back the inflight entry, so an
// acknowledged message was lost without a trace. OnPublishDropped puts such
// a QoS >= 1 message back into the session's queue (inflight, marked
// "send when quota allows"), from which mochi sends it when the client
// acknowledges an earlier one; only a full session queue drops it, counted
// and logged. A client that stops reading therefore costs at most its
// write backlog (backlogConn) and its queue, never another client's
// progress, and with SlowConsumerDisconnect it is closed when its queue is
// full. A full write buffer is a client not reading (packets the kernel
// would not take), so with SlowConsumerDisconnect a QoS 0 message that
// does not fit closes the client too. (Upstream mochi queued packets for a
// write goroutine, whose channel could be full merely because it had not
// been scheduled; the fork has no such goroutine.)
//
// Requeued messages are sent while the client has fewer than its receive
// maximum unacknowledged (MQTT 5; no limit for 3.1.1): after each packet
// the client sends (an acknowledgement frees quota), and when its write
// backlog has drained (the socket takes bytes again; until then the
// acknowledgements of what is in the backlog are still to come). Messages
// that find room in the write buffer go out at once, as mochi always did
// for MQTT 3.1.1 clients: mochi's quota machinery is switched off because
// it deadlocks (OnPacketProcessed), so a v5 client with a receive maximum
// below what is in flight can be sent more than it asked for.
type deliveryHook struct {
	mqtt.HookBase
	s      *Server
	policy string

	// queues holds the *sendQueue of each client (*mqtt.Client) that has
	// had messages requeued, so that a PUBACK from any other client costs
	// one map lookup.
	queues sync.Map

	logMu sync.Mutex
	// per reason: when a drop was last logged, and how many since
	logged map[string]time.Time
	quiet  map[string]int
}

func newDeliveryHook(s *Server) *deliveryHook {
	return &deliveryHook{s: s, policy: s.cfg.Limits.SlowConsumerPolicy, logged: map[string]time.Time{}, quiet: map[string]int{}}
}

func (h *deliveryHook) ID() string { return "lastmile-delivery" }

func (h *deliveryHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnSessionEstablished, mqtt.OnPublishDropped, mqtt.OnQosPublish, mqtt.OnPacketProcessed, mqtt.OnDisconnect}, []byte{b})
}

// sendLimit is how many QoS >= 1 messages cl may have unacknowledged
// before requeued ones wait: its receive maximum (MQTT 5), else no limit,
// as mochi applies none to what it sends directly either.
func (h *deliveryHook) sendLimit(cl *mqtt.Client) int {
	if rm := int(cl.Properties.Props.ReceiveMaximum); rm > 0 {
		return rm
	}
	return math.MaxInt
}

// sendQueue is the state of a client's requeued messages: pending is set
// when one is queued and cleared by the send that finds the queue empty;
// mu lets one goroutine send at a time (the client's read loop after a
// packet, a publisher, the backlog's drain).
type sendQueue struct {
	mu      sync.Mutex
	pending atomic.Bool
}

// OnSessionEstablished switches mochi's own send quota off (see
// OnPacketProcessed): with a maximum of 0 mochi neither queues by quota nor
// runs its queue step. It also has the connection's write backlog, once
// drained, send what is queued.
func (h *deliveryHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	cl.State.Inflight.ResetSendQuota(0)
	if c, ok := cl.Backlogger().(*backlogConn); ok {
		send := func() { h.sendQueued(cl) }
		c.onDrained.Store(&send)
	}
}

// OnPacketProcessed sends queued messages while the client has fewer than
// sendLimit unacknowledged.
//
// mochi's own queue step is unusable: after each packet it takes the next
// queued message under the session's read lock and, inside, takes the
// read lock again — a publisher adding to the session in between
// deadlocks both, and the publisher with them (seen under load in
// TestSlowConsumer). It also deletes the message it sends, so its PUBACK
// never returns the quota and the queue stalls for good after quota sends.
// Its quota is therefore off (OnSessionEstablished) and the only queued
// messages are those OnPublishDropped requeues; they are drained here, each
// staying inflight until acknowledged.
func (h *deliveryHook) OnPacketProcessed(cl *mqtt.Client, _ packets.Packet, err error) {
	if err != nil {
		return
	}
	h.sendQueued(cl)
}

// sendQueued sends cl's requeued messages, if it has any, while its quota
// allows. Whoever queues a message sets pending first and then calls it;
// a call that finds another sending returns, and that one sees pending
// again once it is done: no queued message is left waiting for a trigger
// that already came.
func (h *deliveryHook) sendQueued(cl *mqtt.Client) {
	v, ok := h.queues.Load(cl)
	if !ok {
		return
	}
	q := v.(*sendQueue) //nolint:forcetypeassert // only *sendQueue is stored
	for q.pending.Load() {
		if !q.mu.TryLock() {
			return // the sender looks at pending again when it is done
		}
		q.pending.Store(false)
		if !h.sendSome(cl) {
			q.pending.Store(true) // quota or connection: the next packet or drain goes on
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
	}
}

// sendSome sends cl's queued messages while its quota allows; it reports
// whether none is left queued.
func (h *deliveryHook) sendSome(cl *mqtt.Client) bool {
	all := cl.State.Inflight.GetAll(false)
	sent := 0
	var queued []packets.Packet
	for _, p := range all {
		if p.FixedHeader.Type != packets.Publish {
			continue
		}
		if p.Expiry < 0 {
			queued = append(queued, p)
		} else {
			sent++
		}
	}
	for _, p := range queued {
		if sent >= h.sendLimit(cl) || cl.Closed() {
			return false
		}
		p.Expiry = 0
		cl.State.Inflight.Set(p) // still inflight, now as sent
		if err := cl.WritePacket(p); err != nil {
			return false
		}
		sent++
	}
	return true
}

// dropLogInterval bounds drop logging to one line per reason per interval,
// carrying the count of drops it summarises.
const dropLogInterval = 5 * time.Second

// dropped counts a dropped delivery and logs it, rate-limited.
func (h *deliveryHook) dropped(cl *mqtt.Client, pk packets.Packet, reason string) {
	h.s.metrics.deliveryDrops.WithLabelValues(reason).Inc()
	now := h.s.cfg.Now()
	h.logMu.Lock()
	h.quiet[reason]++
	n := h.quiet[reason]
	due := now.Sub(h.logged[reason]) >= dropLogInterval
	if due {
		h.logged[reason] = now
		h.quiet[reason] = 0
	}
	h.logMu.Unlock()
	if due {
		h.s.log.Warn("messages dropped", "reason", reason, "client", cl.ID, "topic", pk.TopicName,
			"qos", pk.FixedHeader.Qos, "dropped_since_last_log", n)
	}
}

// slow applies SlowConsumerDisconnect to cl.
func (h *deliveryHook) slow(cl *mqtt.Client, why string) bool {
	if h.policy != SlowConsumerDisconnect || cl.Net.Inline || cl.Closed() {
		return false
	}
	h.s.metrics.slowDisconnects.WithLabelValues(why).Inc()
	h.s.log.Warn("disconnecting slow consumer", "client", cl.ID, "reason", why)
	// Stop closes the socket without writing: a DISCONNECT would block on
	// the very buffer that is full.
	cl.Stop(packets.ErrQuotaExceeded)
	return true
}

// OnQosPublish runs for every QoS >= 1 message entering a session's queue.
func (h *deliveryHook) OnQosPublish(cl *mqtt.Client, _ packets.Packet, _ int64, _ int) {
	if cl.State.Inflight.Len() >= h.s.cfg.Limits.MaxQueuedMessages {
		h.slow(cl, dropQueueFull)
	}
}

// OnPublishDropped runs when cl's write buffer is full; mochi then drops pk
// and, for QoS >= 1, rolls back its inflight entry.
func (h *deliveryHook) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	sub, ok := h.subscription(cl, pk.TopicName)
	qos := min(pk.FixedHeader.Qos, sub.Qos, h.s.mochi.Options.Capabilities.MaximumQos)
	if !ok || qos == 0 {
		pk.FixedHeader.Qos = qos
		h.dropped(cl, pk, dropWriteBuffer)
		// The write buffer is what the socket has refused: the client is
		// not reading (see the type's comment).
		h.slow(cl, dropWriteBuffer)
		return
	}
	// mochi counted it as dropped; it is queued instead.
	atomic.AddInt64(&h.s.mochi.Info.MessagesDropped, -1)
	if cl.State.Inflight.Len() >= h.s.cfg.Limits.MaxQueuedMessages+1 { // +1: the rolled-back entry is still there
		atomic.AddInt64(&h.s.mochi.Info.InflightDropped, 1)
		h.dropped(cl, pk, dropQueueFull)
		return
	}
	id, err := cl.NextPacketID()
	if err != nil {
		atomic.AddInt64(&h.s.mochi.Info.InflightDropped, 1)
		h.dropped(cl, pk, dropPacketIDs)
		return
	}
	out := pk.Copy(false)
	out.PacketID = uint16(id) //nolint:gosec // mochi's IDs fit 16 bits
	out.FixedHeader.Qos = qos
	if cl.Properties.ProtocolVersion < 5 || !sub.RetainAsPublished {
		out.FixedHeader.Retain = false
	}
	out.Properties.TopicAlias, out.Properties.TopicAliasFlag = 0, false
	if len(sub.Identifiers) > 0 {
		out.Properties.SubscriptionIdentifier = nil
		for _, v := range sub.Identifiers {
			out.Properties.SubscriptionIdentifier = append(out.Properties.SubscriptionIdentifier, v)
		}
	}
	out.Expiry = -1 // queued: sent when the client's quota allows
	old := h.rolledBack(cl, out)
	if !cl.State.Inflight.Set(out) {
		return
	}
	// mochi's rollback does not decrement Info.Inflight: its count of the
	// dropped copy now stands for this one.
	h.s.metrics.deliveriesQueued.Inc()
	if p := h.s.persist; p != nil {
		p.OnQosPublish(cl, out, out.Created, 0)
		if old != nil {
			p.OnQosComplete(cl, *old)
		}
	}
	v, _ := h.queues.LoadOrStore(cl, new(sendQueue))
	v.(*sendQueue).pending.Store(true) //nolint:forcetypeassert // only *sendQueue is stored
	// If the backlog drained meanwhile, its drain has looked already.
	if c := cl.Backlogger(); c != nil && c.WriteBacklog() == 0 {
		h.sendQueued(cl)
	}
}

// OnDisconnect forgets cl; a persistent session's queue is resent by mochi
// when it reconnects.
func (h *deliveryHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.queues.Delete(cl)
}

// subscription finds cl's subscription matching topic, direct or shared.
func (h *deliveryHook) subscription(cl *mqtt.Client, topic string) (packets.Subscription, bool) {
	subs := h.s.mochi.Topics.SubscribersOf(topic)
	if s, ok := subs.Subscriptions[cl.ID]; ok {
		return s, true
	}
	for _, group := range subs.Shared {
		if s, ok := group[cl.ID]; ok {
			return s, true
		}
	}
	return packets.Subscription{}, false
}

// rolledBack finds the inflight entry mochi is about to roll back for the
// packet out copies, so that a persistent session's stored copy of it can
// be removed (the requeued one replaces it). Only persistent sessions
// store inflight messages, so only they pay for the search.
func (h *deliveryHook) rolledBack(cl *mqtt.Client, out packets.Packet) *packets.Packet {
	if h.s.persist == nil || !persistent(cl) {
		return nil
	}
	for _, p := range cl.State.Inflight.GetAll(false) {
		if p.Expiry >= 0 && p.PacketID != out.PacketID && p.TopicName == out.TopicName &&
			p.Created == out.Created && bytes.Equal(p.Payload, out.Payload) {
			return &p
		}
	}
	return nil
}

var _ mqtt.Hook = (*deliveryHook)(nil)
