package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/lastmile-dm/lastmile/broker"
	"github.com/lastmile-dm/lastmile/tunnel"
	"github.com/lastmile-dm/lastmile/tunnel/relay"
)

// This file wires the tunnel relay to the broker: the relay speaks MQTT
// through the broker's in-process platform messaging.

// newTunnels builds the relay, or returns nil when tunnels are off.
func (n *Node) newTunnels(logger *slog.Logger) (*relay.Relay, error) {
	c := n.cfg.Tunnel
	if !c.Enabled {
		return nil, nil
	}
	path := c.SigningKeyFile
	if path == "" {
		path = filepath.Join(n.cfg.DataDir, "tunnel-signing-key.pem")
	}
	key, err := loadOrCreateSigningKey(path, c.SigningKeyFile == "")
	if err != nil {
		return nil, fmt.Errorf("tunnel.signing_key_file: %w", err)
	}
	return relay.New(relay.Config{
		PubSub: brokerPubSub{n.broker}, SigningKey: key, Connected: n.broker.Connected,
		MaxData:     tunnelMaxData(n.cfg.MQTT.Limits.MaxPacketSize),
		IdleTimeout: c.IdleTimeout, MaxLifetime: c.MaxLifetime, OpenTimeout: c.OpenTimeout,
		Registerer: n.metrics, Logger: logger,
	})
}

// tunnelMaxData is the platform's data frame size: as large as the
// protocol allows (fewer, larger MQTT packets cost the broker and the
// device less per byte) while frames, with the frame header, topic and MQTT
// header (well under 1 KiB), stay inside the broker's packet limit.
func tunnelMaxData(maxPacket uint32) int {
	if maxPacket == 0 {
		maxPacket = broker.DefaultMaxPacketSize
	}
	return max(1, min(tunnel.MaxData, int(maxPacket)-1024))
}

// stopTunnels ends every tunnel session, so that gRPC Connect streams end
// before the gRPC server drains.
func (n *Node) stopTunnels() {
	if n.tunnels != nil {
		n.tunnels.Shutdown()
	}
}

// loadOrCreateSigningKey reads an Ed25519 key (PEM, PKCS #8). A missing
// default key file is created (mode 0600), like an SSH host key.
func loadOrCreateSigningKey(path string, create bool) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		out := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if err := os.WriteFile(path, out, 0o600); err != nil {
			return nil, err
		}
		return key, nil
	}
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PEM \"PRIVATE KEY\" block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 key", path)
	}
	return key, nil
}

// brokerPubSub adapts the broker's platform messaging to tunnel.PubSub.
type brokerPubSub struct{ b *broker.Server }

func (p brokerPubSub) Publish(_ context.Context, topic string, qos byte, payload []byte) error {
	return p.b.PublishMessage(broker.Message{Topic: topic, QoS: qos, Payload: payload})
}

func (p brokerPubSub) Subscribe(filter string, _ byte, h func(topic string, payload []byte)) (func(), error) {
	return p.b.Subscribe(filter, func(m broker.Message) { h(m.Topic, m.Payload) })
}
