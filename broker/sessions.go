package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"

	mqtt "github.com/lastmile-dm/lastmile/third_party/mochi"
	"github.com/lastmile-dm/lastmile/third_party/mochi/hooks/storage"
	"github.com/lastmile-dm/lastmile/third_party/mochi/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-dm/lastmile/broker/persist"
)

// sessionHook keeps MQTT session state in a persist.Store so that it
// survives a restart and a kill -9:
//
//   - sessions that outlive their connection (MQTT 5 session expiry > 0,
//     MQTT 3.1.1 clean session = false): their record, subscriptions, and
//     QoS 1/2 messages inflight or queued for them;
//   - retained messages.
//
// mochi acknowledges a QoS >= 1 PUBLISH before it fans the message out, so
// a crash between PUBACK and the subscribers' inflight writes would lose a
// message the publisher was told is safe. The hook therefore writes the
// publish to a log (bucket wal) with a synced commit in OnPublish, before
// the PUBACK, and deletes it in OnPublished, after the fan-out's writes; the
// engines keep writes in order, so a surviving deletion implies surviving
// inflight records. Only a publish that some persistent session subscribes
// to is logged: a crash cannot lose what nobody is owed after a restart, so
// telemetry to clean-session consumers costs no fsync. (A persistent
// session whose SUBSCRIBE races a publish may miss that one publish in a
// crash; it was not yet subscribed when the publish was checked.) On start,
// ReplayWAL publishes whatever the log still holds. Concurrent publishers share fsyncs (group commit). A replayed
// message can reach a subscriber twice, which QoS 1 allows; QoS 2 is
// exactly-once except across such a crash.
//
// Only the current owner of a client ID writes: mochi calls hooks of a
// taken-over connection (its inflight "dropped", its disconnect) after the
// new connection inherited the session.
type sessionHook struct {
	mqtt.HookBase
	store  persist.Store
	srv    *mqtt.Server
	log    *slog.Logger
	owner  func(*mqtt.Client) bool
	errors prometheus.Counter

	mu      sync.Mutex
	stored  map[string]bool // client IDs with a stored session
	walSeq  uint64
	pending map[*mqtt.Client]string // WAL key of the publish being processed

	loaded struct {
		clients  []storage.Client
		subs     []storage.Subscription
		inflight []storage.Message
		retained []storage.Message
		wal      []walRecord
	}
}

type walRecord struct {
	key string
	msg storage.Message
}

func newSessionHook(st persist.Store, srv *mqtt.Server, log *slog.Logger, owner func(*mqtt.Client) bool, errs prometheus.Counter) *sessionHook {
	return &sessionHook{store: st, srv: srv, log: log.With("hook", "sessions"), owner: owner, errors: errs,
		stored: map[string]bool{}, pending: map[*mqtt.Client]string{}}
}

func (h *sessionHook) ID() string { return "lastmile-sessions" }

func (h *sessionHook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnSubscribed, mqtt.OnUnsubscribed,
		mqtt.OnPublish, mqtt.OnPublished, mqtt.OnRetainMessage, mqtt.OnRetainedExpired,
		mqtt.OnQosPublish, mqtt.OnQosComplete, mqtt.OnQosDropped, mqtt.OnClientExpired, mqtt.OnWillSent,
		mqtt.StoredClients, mqtt.StoredSubscriptions, mqtt.StoredInflightMessages, mqtt.StoredRetainedMessages,
	}, []byte{b})
}

const sep = "\x00"

func subKey(client, filter string) string { return client + sep + filter }
func inflightKey(client string, id uint16) string {
	return client + sep + fmt.Sprintf("%05d", id)
}

// persistent reports whether cl's session outlives its connection.
func persistent(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

func (h *sessionHook) apply(ops []persist.Op, sync bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), authTimeout)
	defer cancel()
	err := h.store.Apply(ctx, ops, sync)
	if err != nil {
		h.errors.Inc()
		h.log.Error("session store write failed", "error", err, "ops", len(ops))
	}
	return err
}

func (h *sessionHook) isStored(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stored[id]
}

// Load reads every stored session into memory for mochi's Stored* calls.
func (h *sessionHook) Load(ctx context.Context) error {
	l := &h.loaded
	err := h.store.Scan(ctx, persist.BucketClients, "", func(_ string, v []byte) error {
		var c storage.Client
		if err := json.Unmarshal(v, &c); err != nil {
			return fmt.Errorf("decode session: %w", err)
		}
		l.clients = append(l.clients, c)
		h.stored[c.ID] = true
		return nil
	})
	if err != nil {
		return err
	}
	scanMsgs := func(bucket string, into *[]storage.Message) error {
		return h.store.Scan(ctx, bucket, "", func(k string, v []byte) error {
			var m storage.Message
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("decode %s %q: %w", bucket, k, err)
			}
			*into = append(*into, m)
			return nil
		})
	}
	if err := h.store.Scan(ctx, persist.BucketSubs, "", func(_ string, v []byte) error {
		var s storage.Subscription
		if err := json.Unmarshal(v, &s); err != nil {
			return fmt.Errorf("decode subscription: %w", err)
		}
		l.subs = append(l.subs, s)
		return nil
	}); err != nil {
		return err
	}
	if err := scanMsgs(persist.BucketInflight, &l.inflight); err != nil {
		return err
	}
	if err := scanMsgs(persist.BucketRetained, &l.retained); err != nil {
		return err
	}
	err = h.store.Scan(ctx, persist.BucketWAL, "", func(k string, v []byte) error {
		var m storage.Message
		if err := json.Unmarshal(v, &m); err != nil {
			return fmt.Errorf("decode publish log %q: %w", k, err)
		}
		l.wal = append(l.wal, walRecord{key: k, msg: m})
		if seq, err := strconv.ParseUint(k, 16, 64); err == nil && seq >= h.walSeq {
			h.walSeq = seq + 1
		}
		return nil
	})
	if err != nil {
		return err
	}
	h.log.Info("restored sessions", "sessions", len(l.clients), "subscriptions", len(l.subs),
		"inflight", len(l.inflight), "retained", len(l.retained), "unfinished_publishes", len(l.wal))
	return nil
}

func (h *sessionHook) StoredClients() ([]storage.Client, error) { return h.loaded.clients, nil }
func (h *sessionHook) StoredSubscriptions() ([]storage.Subscription, error) {
	return h.loaded.subs, nil
}
func (h *sessionHook) StoredInflightMessages() ([]storage.Message, error) {
	return h.loaded.inflight, nil
}
func (h *sessionHook) StoredRetainedMessages() ([]storage.Message, error) {
	return h.loaded.retained, nil
}

// ReplayWAL publishes the messages whose fan-out a crash interrupted, then
// forgets them.
func (h *sessionHook) ReplayWAL(ctx context.Context) error {
	wal := h.loaded.wal
	h.loaded = struct {
		clients  []storage.Client
		subs     []storage.Subscription
		inflight []storage.Message
		retained []storage.Message
		wal      []walRecord
	}{}
	if len(wal) == 0 {
		return nil
	}
	ops := make([]persist.Op, 0, len(wal))
	replayer := h.srv.NewClient(nil, "local", "lastmile-replay", true)
	for _, r := range wal {
		pk := r.msg.ToPacket()
		pk.FixedHeader.Type = packets.Publish
		pk.FixedHeader.Retain = false // the retained copy was stored before the PUBACK
		pk.PacketID = 1
		if err := h.srv.InjectPacket(replayer, pk); err != nil {
			h.log.Error("replay publish", "topic", pk.TopicName, "error", err)
		}
		ops = append(ops, persist.Op{Bucket: persist.BucketWAL, Key: r.key, Delete: true})
	}
	h.log.Info("replayed unfinished publishes", "count", len(wal))
	return h.store.Apply(ctx, ops, true)
}

// Flush makes every earlier write durable.
func (h *sessionHook) Flush(ctx context.Context) error {
	return h.store.Apply(ctx, []persist.Op{{Bucket: persist.BucketWAL, Key: "~flush", Delete: true}}, true)
}

func clientRecord(cl *mqtt.Client) storage.Client {
	props := cl.Properties.Props.Copy(false)
	return storage.Client{
		ID: cl.ID, T: storage.ClientKey, Remote: cl.Net.Remote, Listener: cl.Net.Listener,
		Username: cl.Properties.Username, Clean: cl.Properties.Clean, ProtocolVersion: cl.Properties.ProtocolVersion,
		Properties: storage.ClientProperties{
			SessionExpiryInterval: props.SessionExpiryInterval, SessionExpiryIntervalFlag: props.SessionExpiryIntervalFlag,
			ReceiveMaximum: props.ReceiveMaximum, TopicAliasMaximum: props.TopicAliasMaximum,
			User: props.User, MaximumPacketSize: props.MaximumPacketSize,
			RequestProblemInfo: props.RequestProblemInfo, RequestProblemInfoFlag: props.RequestProblemInfoFlag,
			RequestResponseInfo: props.RequestResponseInfo,
		},
		Will: storage.ClientWill(cl.Properties.Will),
	}
}

func (h *sessionHook) putClient(cl *mqtt.Client) {
	b, err := json.Marshal(clientRecord(cl))
	if err != nil {
		h.log.Error("encode session", "client", cl.ID, "error", err)
		return
	}
	if h.apply([]persist.Op{{Bucket: persist.BucketClients, Key: cl.ID, Value: b}}, false) == nil {
		h.mu.Lock()
		h.stored[cl.ID] = true
		h.mu.Unlock()
	}
}

// wipe deletes everything stored for client ID id.
func (h *sessionHook) wipe(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), authTimeout)
	defer cancel()
	ops := []persist.Op{{Bucket: persist.BucketClients, Key: id, Delete: true}}
	for _, b := range []string{persist.BucketSubs, persist.BucketInflight} {
		err := h.store.Scan(ctx, b, id+sep, func(k string, _ []byte) error {
			ops = append(ops, persist.Op{Bucket: b, Key: k, Delete: true})
			return nil
		})
		if err != nil {
			h.errors.Inc()
			h.log.Error("session store scan failed", "client", id, "error", err)
		}
	}
	if h.apply(ops, false) == nil {
		h.mu.Lock()
		delete(h.stored, id)
		h.mu.Unlock()
	}
}

// OnSessionEstablished stores a persistent session and discards a stored
// one that the new connection does not continue (clean start).
func (h *sessionHook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	if !h.owner(cl) {
		return
	}
	if h.isStored(cl.ID) && (pk.Connect.Clean || !persistent(cl)) {
		h.wipe(cl.ID)
	}
	if persistent(cl) {
		h.putClient(cl)
	}
}

func (h *sessionHook) OnWillSent(cl *mqtt.Client, _ packets.Packet) {
	if h.owner(cl) && persistent(cl) && h.isStored(cl.ID) {
		h.putClient(cl)
	}
}

// OnDisconnect discards a session that ends with its connection.
func (h *sessionHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	h.mu.Lock()
	delete(h.pending, cl)
	h.mu.Unlock()
	if !h.owner(cl) || cl.IsTakenOver() {
		return
	}
	if expire && h.isStored(cl.ID) {
		h.wipe(cl.ID)
	}
}

func (h *sessionHook) OnClientExpired(cl *mqtt.Client) {
	if h.owner(cl) && h.isStored(cl.ID) {
		h.wipe(cl.ID)
	}
}

func (h *sessionHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if cl.Net.Inline || !h.owner(cl) || !persistent(cl) {
		return
	}
	var ops []persist.Op
	for i, f := range pk.Filters {
		if i >= len(codes) || codes[i] >= packets.ErrUnspecifiedError.Code {
			continue
		}
		b, err := json.Marshal(storage.Subscription{
			ID: subKey(cl.ID, f.Filter), T: storage.SubscriptionKey, Client: cl.ID, Qos: codes[i], Filter: f.Filter,
			Identifier: f.Identifier, NoLocal: f.NoLocal, RetainHandling: f.RetainHandling, RetainAsPublished: f.RetainAsPublished,
		})
		if err != nil {
			continue
		}
		ops = append(ops, persist.Op{Bucket: persist.BucketSubs, Key: subKey(cl.ID, f.Filter), Value: b})
	}
	if len(ops) > 0 {
		// Synced: the client was told the subscription exists.
		_ = h.apply(ops, true)
	}
}

func (h *sessionHook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline || !h.owner(cl) || !h.isStored(cl.ID) {
		return
	}
	ops := make([]persist.Op, 0, len(pk.Filters))
	for _, f := range pk.Filters {
		ops = append(ops, persist.Op{Bucket: persist.BucketSubs, Key: subKey(cl.ID, f.Filter), Delete: true})
	}
	_ = h.apply(ops, false)
}

func messageRecord(cl *mqtt.Client, pk packets.Packet, t string, id string) storage.Message {
	props := pk.Properties.Copy(false)
	return storage.Message{
		ID: id, T: t, Client: cl.ID, Origin: pk.Origin, PacketID: pk.PacketID,
		FixedHeader: pk.FixedHeader, TopicName: pk.TopicName, Payload: pk.Payload, Created: pk.Created,
		Properties: storage.MessageProperties{
			PayloadFormat: props.PayloadFormat, PayloadFormatFlag: props.PayloadFormatFlag,
			MessageExpiryInterval: props.MessageExpiryInterval, ContentType: props.ContentType,
			ResponseTopic: props.ResponseTopic, CorrelationData: props.CorrelationData,
			SubscriptionIdentifier: props.SubscriptionIdentifier, User: props.User,
		},
	}
}

// OnPublish logs a QoS >= 1 publish durably before mochi acknowledges it,
// when a persistent session subscribes to its topic.
func (h *sessionHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || pk.FixedHeader.Qos == 0 {
		return pk, nil
	}
	if !h.persistentSubscriber(pk.TopicName) {
		return pk, nil
	}
	h.mu.Lock()
	key := fmt.Sprintf("%016x", h.walSeq)
	h.walSeq++
	h.mu.Unlock()
	b, err := json.Marshal(messageRecord(cl, pk, storage.InflightKey, key))
	if err == nil {
		// Write out what this publisher's read loop holds (acknowledgements
		// and deliveries of its earlier packets) and free the event loop
		// serving it, if any, before waiting for the disk.
		cl.WillBlock()
		err = h.apply([]persist.Op{{Bucket: persist.BucketWAL, Key: key, Value: b}}, true)
	}
	if err != nil {
		// Not acknowledged: the publisher keeps the message and retries.
		if cl.Properties.ProtocolVersion == 5 {
			return pk, packets.ErrUnspecifiedError
		}
		_ = h.srv.DisconnectClient(cl, packets.ErrServerUnavailable)
		return pk, packets.ErrRejectPacket
	}
	h.mu.Lock()
	h.pending[cl] = key
	h.mu.Unlock()
	return pk, nil
}

// persistentSubscriber reports whether a persistent session subscribes to
// topic: only then can a crash lose a message someone is owed. Shared
// groups count when any member is persistent, as the member is chosen later.
func (h *sessionHook) persistentSubscriber(topic string) bool {
	h.mu.Lock()
	none := len(h.stored) == 0
	h.mu.Unlock()
	if none {
		return false
	}
	subs := h.srv.Topics.SubscribersOf(topic)
	h.mu.Lock()
	defer h.mu.Unlock()
	for id := range subs.Subscriptions {
		if h.stored[id] {
			return true
		}
	}
	for _, group := range subs.Shared {
		for id := range group {
			if h.stored[id] {
				return true
			}
		}
	}
	return false
}

// OnPublished forgets the logged publish: its fan-out writes are done.
func (h *sessionHook) OnPublished(cl *mqtt.Client, _ packets.Packet) {
	h.mu.Lock()
	key, ok := h.pending[cl]
	delete(h.pending, cl)
	h.mu.Unlock()
	if ok {
		_ = h.apply([]persist.Op{{Bucket: persist.BucketWAL, Key: key, Delete: true}}, false)
	}
}

func (h *sessionHook) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	if r == -1 {
		_ = h.apply([]persist.Op{{Bucket: persist.BucketRetained, Key: pk.TopicName, Delete: true}}, pk.FixedHeader.Qos > 0)
		return
	}
	b, err := json.Marshal(messageRecord(cl, pk, storage.RetainedKey, pk.TopicName))
	if err != nil {
		return
	}
	// Synced for QoS >= 1: this runs before the PUBACK.
	_ = h.apply([]persist.Op{{Bucket: persist.BucketRetained, Key: pk.TopicName, Value: b}}, pk.FixedHeader.Qos > 0)
}

func (h *sessionHook) OnRetainedExpired(topic string) {
	_ = h.apply([]persist.Op{{Bucket: persist.BucketRetained, Key: topic, Delete: true}}, false)
}

// OnQosPublish stores a message inflight or queued for a persistent session.
func (h *sessionHook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, _ int) {
	if cl.Net.Inline || !persistent(cl) || !h.owner(cl) {
		return
	}
	m := messageRecord(cl, pk, storage.InflightKey, inflightKey(cl.ID, pk.PacketID))
	m.Sent = sent
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	_ = h.apply([]persist.Op{{Bucket: persist.BucketInflight, Key: m.ID, Value: b}}, false)
}

func (h *sessionHook) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline || !h.owner(cl) || !h.isStored(cl.ID) {
		return
	}
	_ = h.apply([]persist.Op{{Bucket: persist.BucketInflight, Key: inflightKey(cl.ID, pk.PacketID), Delete: true}}, false)
}

func (h *sessionHook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	// During a takeover mochi "drops" the old connection's inflight after
	// the new one inherited it: the owner check keeps the stored copy.
	if cl.IsTakenOver() {
		return
	}
	h.OnQosComplete(cl, pk)
}
