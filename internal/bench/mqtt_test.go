package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var packetFixtures = []struct {
	name    string
	in      []byte
	typ     byte
	topic   string
	payload string
	qos     byte
	id      uint16
	wantErr bool
}{
	{name: "connack", in: []byte{0x20, 2, 0, 0}, typ: 2},
	{name: "puback", in: []byte{0x40, 2, 0, 7}, typ: 4},
	{name: "publish qos0", in: []byte{0x30, 5, 0, 1, 't', 'h', 'i'}, typ: 3, topic: "t", payload: "hi"},
	{name: "publish qos1", in: []byte{0x32, 7, 0, 1, 't', 0, 9, 'h', 'i'}, typ: 3, topic: "t", payload: "hi", qos: 1, id: 9},
	{name: "publish qos1 no id", in: []byte{0x32, 3, 0, 1, 't'}, typ: 3, wantErr: true},
	{name: "publish topic too long", in: []byte{0x30, 3, 0, 9, 't'}, typ: 3, wantErr: true},
	{name: "publish qos3", in: []byte{0x36, 3, 0, 1, 't'}, typ: 3, wantErr: true},
	{name: "length overflow", in: []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x7f}, wantErr: true},
	{name: "too large", in: []byte{0x30, 0xff, 0xff, 0xff, 0x7f}, wantErr: true},
	{name: "truncated", in: []byte{0x30, 5, 0, 1}, wantErr: true},
	{name: "empty", in: nil, wantErr: true},
}

func decode(in []byte) (typ byte, topic string, payload []byte, id uint16, qos byte, err error) {
	typ, body, err := readPacket(bufio.NewReader(bytes.NewReader(in)), nil)
	if err != nil || typ != 3 {
		return typ, "", nil, 0, 0, err
	}
	topic, payload, id, qos, err = parsePublish(body, nil)
	return typ, topic, payload, id, qos, err
}

func TestReadPacketFixtures(t *testing.T) {
	t.Parallel()
	for _, f := range packetFixtures {
		typ, topic, payload, id, qos, err := decode(f.in)
		if f.wantErr {
			if err == nil {
				t.Errorf("%s: no error", f.name)
			}
			continue
		}
		if err != nil || typ != f.typ || topic != f.topic || string(payload) != f.payload || qos != f.qos || id != f.id {
			t.Errorf("%s: got type %d topic %q payload %q qos %d id %d err %v", f.name, typ, topic, payload, qos, id, err)
		}
	}
}

// FuzzReadPacket: whatever a broker sends, the client's decoder returns a
// packet or an error, never panics, and never reads past the packet.
func FuzzReadPacket(f *testing.F) {
	for _, fx := range packetFixtures {
		f.Add(fx.in)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		_, _, payload, _, _, err := decode(in)
		if err == nil && len(payload) > len(in) {
			t.Fatalf("payload longer than the input")
		}
	})
}

// TestScenariosAgainstMosquitto runs the harness end to end, small, against
// the real mosquitto: provisioning through password and ACL files, the
// connect, fanin, fanout and storm scenarios, and what they measure.
func TestScenariosAgainstMosquitto(t *testing.T) {
	t.Parallel()
	bin := "/usr/sbin/mosquitto"
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("mosquitto is required: make test-deps")
		}
		t.Skip("mosquitto not installed (make test-deps)")
	}
	dir := t.TempDir()
	m := &Mosquitto{Binary: bin, Dir: filepath.Join(dir, "m")}
	if err := os.MkdirAll(m.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cases := []Case{
		{"connect", "connect", Params{Devices: 20, Sources: 2}},
		{"fanin", "fanin", Params{Devices: 10, Subs: 2, QoS: 1, Rate: 200, Duration: 500 * time.Millisecond, Payload: 32, Window: 1}},
		{"fanout", "fanout", Params{Subs: 5, QoS: 0, Rate: 50, Duration: 500 * time.Millisecond, Payload: 32}},
		{"storm", "reconnect-storm", Params{Devices: 10}},
	}
	if err := Provision(ctx, []Target{m}, cases); err != nil {
		t.Fatal(err)
	}
	figure := func(r Result, name string) float64 {
		for _, f := range r.Figures {
			if f.Name == name {
				return f.Value
			}
		}
		t.Fatalf("%s: no figure %s in %+v", r.Scenario, name, r.Figures)
		return 0
	}
	for _, c := range cases {
		r, err := RunOnce(ctx, m, c, &bytes.Buffer{})
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		switch c.Scenario {
		case "connect":
			if figure(r, "failed") != 0 || figure(r, "connects") <= 0 || figure(r, "rss_per_conn") <= 0 {
				t.Errorf("connect: %+v", r.Figures)
			}
		case "fanin":
			if figure(r, "delivered") <= 0 || figure(r, "dropped_qos1") != 0 || figure(r, "p99") <= 0 {
				t.Errorf("fanin: %+v", r.Figures)
			}
		case "fanout":
			if figure(r, "delivered") <= 0 {
				t.Errorf("fanout: %+v", r.Figures)
			}
		case "reconnect-storm":
			if figure(r, "reconnected") != 10 || figure(r, "sessions_intact") != 100 {
				t.Errorf("storm: %+v", r.Figures)
			}
		}
	}
	// A wrong password is refused: the ACL and password files are in force.
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	_, _, err := dial(ctx, connectOpts{addr: m.Addr(), clientID: DeviceID(0), username: DeviceID(0), password: "wrong", keepalive: 10, clean: true})
	if !errors.Is(err, errRefused) {
		t.Errorf("wrong password: %v, want refused", err)
	}
}

func TestMedian(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{7}, 7}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}
