package services

import (
	"crypto/ed25519"
	"testing"

	"github.com/lastmile-dm/lastmile/internal/tunneltest"
	"github.com/lastmile-dm/lastmile/tunnel/relay"
)

// newRelay returns a relay on a real in-process broker.
func newRelay(t *testing.T) *relay.Relay {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(nil)
	r, err := relay.New(relay.Config{PubSub: tunneltest.Platform{B: tunneltest.Broker(t)}, SigningKey: key})
	if err != nil {
		t.Fatal(err)
	}
	return r
}
