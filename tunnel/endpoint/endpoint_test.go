package endpoint

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"testing"
)

type nopPubSub struct{}

func (nopPubSub) Publish(context.Context, string, byte, []byte) error { return nil }
func (nopPubSub) Subscribe(string, byte, func(string, []byte)) (func(), error) {
	return func() {}, nil
}

func TestConfigRefusesBadSettings(t *testing.T) {
	t.Parallel()
	pub, _, _ := ed25519.GenerateKey(nil)
	good := func() Config {
		return Config{DeviceID: "dev1", PubSub: nopPubSub{}, TrustedKeys: []ed25519.PublicKey{pub}, AllowList: []string{"127.0.0.1:22"}}
	}
	cases := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"bad device", func(c *Config) { c.DeviceID = "a/b" }, "invalid device ID"},
		{"no pubsub", func(c *Config) { c.PubSub = nil }, "PubSub"},
		{"no key", func(c *Config) { c.TrustedKeys = nil }, "TrustedKeys"},
		{"short key", func(c *Config) { c.TrustedKeys = []ed25519.PublicKey{pub[:5]} }, "not an Ed25519"},
		{"qos 2", func(c *Config) { c.QoS = 2 }, "QoS"},
		{"port missing", func(c *Config) { c.AllowList = []string{"127.0.0.1"} }, `"127.0.0.1" is not host:port`},
		{"host missing", func(c *Config) { c.AllowList = []string{":22"} }, "not host:port"},
	}
	c := good()
	if err := c.CheckAndSetDefaults(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	if c.MaxSessions != DefaultMaxSessions || c.Dial == nil {
		t.Fatal("defaults not filled")
	}
	for _, k := range cases {
		c := good()
		k.edit(&c)
		if err := c.CheckAndSetDefaults(); err == nil || !strings.Contains(err.Error(), k.want) {
			t.Errorf("%s: %v, want an error mentioning %q", k.name, err, k.want)
		}
	}
}

func TestParseTrustedKeys(t *testing.T) {
	t.Parallel()
	pub, _, _ := ed25519.GenerateKey(nil)
	keys, err := ParseTrustedKeys([]string{base64.StdEncoding.EncodeToString(pub) + "\n"})
	if err != nil || len(keys) != 1 || !keys[0].Equal(pub) {
		t.Fatalf("good key: %v %v", keys, err)
	}
	for _, bad := range []string{"", "not base64!", base64.StdEncoding.EncodeToString(pub[:31])} {
		if _, err := ParseTrustedKeys([]string{bad}); err == nil || !strings.Contains(err.Error(), "Ed25519") {
			t.Errorf("ParseTrustedKeys(%q) = %v", bad, err)
		}
	}
}
