package node

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-dm/lastmile/broker"
	"github.com/lastmile-dm/lastmile/dm/config"
	"github.com/lastmile-dm/lastmile/dm/event"
	"github.com/lastmile-dm/lastmile/dm/registry"
	"github.com/lastmile-dm/lastmile/dm/shadow"
	"github.com/lastmile-dm/lastmile/dm/topic"
)

// This file connects config push to MQTT and runs its rollout runner:
//
//	device PUBLISH $dm/{id}/config/{get|status} ──> handle (publisher's
//	   goroutine: parse, check identity, copy) ──> worker (by device, so a
//	   device's reports stay in order) ──> config.Service ──> PublishMessage
//	runner goroutine ──> config.Service.Run (under the store's lease)

const (
	configWorkers    = 16
	configQueueLen   = 1024
	configReqTimeout = 10 * time.Second
)

type configJob struct {
	deviceID, kind string
	payload        []byte
}

// configBridge serves the device side of config push.
type configBridge struct {
	svc    *config.Service
	log    *slog.Logger
	seed   maphash.Seed
	queues []chan configJob
	ctx    context.Context
	stop   context.CancelFunc
	cancel func()
	wg     sync.WaitGroup
	once   sync.Once

	messages *prometheus.CounterVec
}

// setupConfig builds config push and starts its workers and runner;
// called once from New after the shadows exist.
func (n *Node) setupConfig(logger *slog.Logger) error {
	svc, err := config.New(config.Config{Store: n.store, Logger: logger, Holder: n.cfg.NodeName + "/" + n.bootID,
		Targets: configTargets{registry: n.registry, shadows: n.shadows}, Messenger: configMessenger{n.broker}})
	if err != nil {
		return err
	}
	b := &configBridge{svc: svc, log: logger.With("component", "config-mqtt"), seed: maphash.MakeSeed()}
	b.messages = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lastmile_config_messages_total",
		Help: "Config push messages from devices by kind (get, status) and outcome (ok, rejected, dropped, error).",
	}, []string{"kind", "outcome"})
	if err := n.metrics.Register(b.messages); err != nil {
		return fmt.Errorf("config metrics: %w", err)
	}
	if n.events != nil {
		svc.AddNotifier(configEvents{n.events})
	}
	b.ctx, b.stop = context.WithCancel(context.Background())
	b.queues = make([]chan configJob, configWorkers)
	for i := range b.queues {
		b.queues[i] = make(chan configJob, configQueueLen)
		b.wg.Add(1)
		go b.work(b.queues[i])
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		svc.Run(b.ctx)
	}()
	if b.cancel, err = n.broker.Subscribe(topic.ConfigFilter, b.handle); err != nil {
		b.close()
		return err
	}
	n.configs, n.configBridge = svc, b
	return nil
}

// close stops the runner and the workers; queued messages are dropped
// (the device asks again on its next connection).
func (b *configBridge) close() {
	if b == nil {
		return
	}
	b.once.Do(func() {
		if b.cancel != nil {
			b.cancel()
		}
		b.stop()
		b.wg.Wait()
	})
}

// handle runs on the publisher's goroutine: it must not block.
func (b *configBridge) handle(m broker.Message) {
	id, kind, ok := topic.ParseConfigTopic(m.Topic)
	if !ok || m.ClientID == "" || (kind != topic.ConfigGet && kind != topic.ConfigStatus) {
		return // ours (document, confirm) or not a config topic
	}
	if m.PrincipalID != id {
		b.log.Warn("config message from a client that is not the device", "device", id, "principal", m.PrincipalID)
		b.messages.WithLabelValues(kind, "rejected").Inc()
		return
	}
	var h maphash.Hash
	h.SetSeed(b.seed)
	_, _ = h.WriteString(id)
	select {
	case b.queues[h.Sum64()%uint64(len(b.queues))] <- configJob{deviceID: id, kind: kind, payload: append([]byte(nil), m.Payload...)}:
	default:
		b.messages.WithLabelValues(kind, "dropped").Inc()
		b.log.Warn("config queue full: message dropped", "device", id, "kind", kind)
	}
}

func (b *configBridge) work(q chan configJob) {
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case j := <-q:
			b.serve(j)
		}
	}
}

func (b *configBridge) serve(j configJob) {
	ctx, cancel := context.WithTimeout(b.ctx, configReqTimeout)
	defer cancel()
	var err error
	switch j.kind {
	case topic.ConfigGet:
		err = b.svc.HandleGet(ctx, j.deviceID)
	case topic.ConfigStatus:
		var p topic.ConfigStatusPayload
		if p, err = topic.ParseConfigStatus(j.payload); err == nil {
			err = b.svc.HandleStatus(ctx, j.deviceID, p)
		}
	}
	switch {
	case err == nil:
		b.messages.WithLabelValues(j.kind, "ok").Inc()
	case errors.Is(err, topic.ErrBadConfigPayload), errors.Is(err, config.ErrInvalid), errors.Is(err, config.ErrNotFound):
		b.messages.WithLabelValues(j.kind, "rejected").Inc()
		b.log.Warn("config message refused", "device", j.deviceID, "kind", j.kind, "error", err)
	default:
		b.messages.WithLabelValues(j.kind, "error").Inc()
		b.log.Error("config message failed", "device", j.deviceID, "kind", j.kind, "error", err)
	}
}

// configEvents puts every device state change of a rollout on the event
// stream as job.progress.
type configEvents struct{ bus *event.Bus }

var _ config.Notifier = configEvents{}

func (e configEvents) ConfigStatusChanged(c config.Change) {
	e.bus.Publish(event.Event{Type: event.TypeJobProgress, DeviceID: c.DeviceID, Time: c.Time, Job: &event.Job{
		Kind: event.JobConfig, ID: c.Rollout.ID, State: c.State, Reason: c.Reason, Profile: c.Rollout.Profile, Version: c.Rollout.Version}})
}

// configMessenger adapts the broker to config.Messenger.
type configMessenger struct{ b *broker.Server }

func (m configMessenger) Publish(to string, payload []byte) error {
	err := m.b.PublishMessage(broker.Message{Topic: to, Payload: payload, QoS: 1, ContentType: "application/json"})
	if errors.Is(err, broker.ErrNotStarted) {
		return nil // before Run: devices ask when they connect
	}
	return err
}

// configTargets resolves groups through the registry and fleet queries
// through the shadow service.
type configTargets struct {
	registry *registry.Service
	shadows  *shadow.Service
}

func (t configTargets) DeviceExists(ctx context.Context, id string) error {
	_, _, err := t.registry.Get(ctx, id)
	if errors.Is(err, registry.ErrNotFound) {
		return fmt.Errorf("device %s: %w", id, config.ErrNotFound)
	}
	return err
}

func (t configTargets) ResolveTargets(ctx context.Context, tg config.Target, tok string) ([]string, string, error) {
	var ids []string
	if tg.Group != "" {
		p, err := t.registry.List(ctx, registry.Query{Group: tg.Group, PageSize: registry.MaxPageSize, PageToken: tok})
		if err != nil {
			return nil, "", err
		}
		for _, d := range p.Devices {
			ids = append(ids, d.ID)
		}
		return ids, p.NextToken, nil
	}
	f, err := shadow.ParseFilter(tg.Query)
	if err != nil {
		return nil, "", fmt.Errorf("%w: query: %w", config.ErrInvalid, err)
	}
	p, err := t.shadows.QueryDevices(ctx, shadow.FleetQuery{Filter: f, PageSize: shadow.MaxFleetPageSize, PageToken: tok})
	if err != nil {
		return nil, "", err
	}
	for _, m := range p.Matches {
		ids = append(ids, m.Device.ID)
	}
	return ids, p.NextToken, nil
}
