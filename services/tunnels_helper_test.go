package services

import (
	"crypto/ed25519"
	"testing"

	"github.com/lastmile-dm/lastmile/internal/tunneltest"
	"github.com/lastmile-dm/lastmile/tunnel/relay"
	"github.com/lastmile-dm/lastmile/tunnel/snmprelay/proxy"
)

// newRelay returns a relay on a real in-process broker.
func newRelay(t *testing.T) *relay.Relay {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(nil)
	b := tunneltest.Broker(t)
	r, err := relay.New(relay.Config{PubSub: tunneltest.Platform{B: b}, SigningKey: key, Connected: b.Connected, Logger: tunneltest.Quiet})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// newSNMPProxy returns an SNMP proxy on a real in-process broker.
func newSNMPProxy(t *testing.T) *proxy.Proxy {
	t.Helper()
	b := tunneltest.Broker(t)
	p, err := proxy.New(proxy.Config{PubSub: tunneltest.Platform{B: b}, Connected: b.Connected, Logger: tunneltest.Quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}
