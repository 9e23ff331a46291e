package executor

import (
	"context"
	"strings"
	"testing"

	"github.com/gosnmp/gosnmp"

	"github.com/lastmile-dm/lastmile/tunnel"
	"github.com/lastmile-dm/lastmile/tunnel/snmprelay"
)

// TestEncodeFitting: an answer over the relay's message limit is cut (a
// bulk answer) or becomes tooBig, and still decodes.
func TestEncodeFitting(t *testing.T) {
	t.Parallel()
	big := make([]byte, 60<<10)
	vars := []snmprelay.Var{}
	for range 4 {
		vars = append(vars, snmprelay.Var{OID: "1.3.6.1", Type: byte(gosnmp.OctetString), Bytes: big})
	}
	b, err := encodeFitting(snmprelay.Response{ID: "a", Vars: vars})
	if err != nil || len(b) > snmprelay.MaxMessage {
		t.Fatalf("%d bytes, %v", len(b), err)
	}
	r, err := snmprelay.DecodeResponse(b)
	if err != nil || len(r.Vars) != 1 || r.ErrorStatus != 0 {
		t.Fatalf("cut answer: %d vars, status %d, %v", len(r.Vars), r.ErrorStatus, err)
	}
	huge := []snmprelay.Var{{OID: "1.3.6.1", Type: byte(gosnmp.OctetString), Bytes: make([]byte, 200<<10)}}
	b, err = encodeFitting(snmprelay.Response{ID: "a", Vars: huge})
	if err != nil {
		t.Fatal(err)
	}
	r, err = snmprelay.DecodeResponse(b)
	if err != nil || r.ErrorStatus != int(gosnmp.TooBig) || len(r.Vars) != 0 {
		t.Fatalf("too big: %+v %v", r, err)
	}
	small, _ := encodeFitting(snmprelay.Response{ID: "a", Vars: vars[:1]})
	if !strings.Contains(string(small), `"id":"a"`) {
		t.Fatalf("small answer: %s", small)
	}
}

// idle is a PubSub for configuration checks only: it is never used.
type idle struct{}

func (idle) Publish(context.Context, string, byte, []byte) error { return nil }
func (idle) Subscribe(string, byte, func(string, []byte)) (func(), error) {
	return func() {}, nil
}

func TestConfigChecked(t *testing.T) {
	t.Parallel()
	ok := Config{DeviceID: "d", Community: "c", Target: "h:161", PubSub: idle{}}
	if err := ok.CheckAndSetDefaults(); err != nil || ok.Timeout != DefaultTimeout || ok.Workers != DefaultWorkers {
		t.Fatalf("good config: %+v %v", ok, err)
	}
	for _, c := range []Config{
		{DeviceID: "a/b", Community: "c", Target: "h:161"},
		{DeviceID: "d", Target: "h:161"},
		{DeviceID: "d", Community: "c", Target: "h"},
		{DeviceID: "d", Community: "c", Target: "h:99999"},
	} {
		c.PubSub = idle{}
		if err := c.CheckAndSetDefaults(); err == nil {
			t.Errorf("accepted %+v", c)
		}
	}
}

var _ tunnel.PubSub = idle{}
