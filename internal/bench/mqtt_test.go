package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
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
	runSmallScenarios(ctx, t, m)
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

// TestScenariosAgainstMochi runs the same against bare upstream mochi,
// started like lmbench starts it: this test binary re-executed as
// `mochi-serve` (see TestMain).
func TestScenariosAgainstMochi(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	runSmallScenarios(ctx, t, &Mochi{})
}

// TestMain lets the test binary stand in for lmbench's mochi-serve and
// connect-worker.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "connect-worker" {
		if err := RunConnectWorker(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if len(os.Args) > 2 && os.Args[1] == "mochi-serve" && os.Args[2] == "-addr" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		err := ServeMochi(ctx, os.Args[3])
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runSmallScenarios(ctx context.Context, t *testing.T, target Target) {
	t.Helper()
	cases := []Case{
		{"connect", "connect", Params{Devices: 20, Sources: 2}},
		{"connect procs", "connect", Params{Devices: 21, Sources: 2, Procs: 3}},
		{"connect hold", "connect", Params{Devices: 10, Sources: 2, Hold: 1500 * time.Millisecond}},
		{"fanin", "fanin", Params{Devices: 10, Subs: 2, QoS: 1, Rate: 200, Duration: 500 * time.Millisecond, Payload: 32, Window: 1}},
		{"fanout", "fanout", Params{Subs: 5, QoS: 0, Rate: 50, Duration: 500 * time.Millisecond, Payload: 32}},
		{"storm", "reconnect-storm", Params{Devices: 10}},
	}
	if err := Provision(ctx, []Target{target}, cases); err != nil {
		t.Fatal(err)
	}
	figure := func(r Result, name string) float64 {
		for _, f := range r.Figures {
			if f.Name == name {
				return f.Value
			}
		}
		t.Fatalf("%s on %s: no figure %s in %+v", r.Scenario, target.Name(), name, r.Figures)
		return 0
	}
	for _, c := range cases {
		var log bytes.Buffer
		r, err := RunOnce(ctx, target, c, &log)
		if err != nil {
			t.Fatalf("%s on %s: %v\n%s", c.Name, target.Name(), err, log.String())
		}
		switch c.Scenario {
		case "connect":
			if figure(r, "failed") != 0 || figure(r, "connects") <= 0 || figure(r, "rss_per_conn") <= 0 {
				t.Errorf("%s on %s: %+v\n%s", c.Name, target.Name(), r.Figures, log.String())
			}
			if c.Params.Hold > 0 && (figure(r, "dropped_while_held") != 0 || figure(r, "rss_per_conn_held") <= 0) {
				t.Errorf("%s on %s: pinged connections dropped, or no held figure: %+v", c.Name, target.Name(), r.Figures)
			}
		case "fanin":
			if figure(r, "delivered") <= 0 || figure(r, "dropped_qos1") < 0 || figure(r, "p99") <= 0 {
				t.Errorf("fanin on %s: %+v", target.Name(), r.Figures)
			}
			// These are the reference brokers, not lastmile: what they drop
			// is a figure to report, not a harness failure (mosquitto once
			// lost 1 of 100 acknowledged messages here in a loaded CI run).
			// lastmile's own guarantee is TestFanInSaturationDeliversEveryAckedQoS1.
			if d := figure(r, "dropped_qos1"); d != 0 {
				t.Logf("fanin on %s: %v acknowledged QoS 1 messages not delivered within 10 s", target.Name(), d)
			}
		case "fanout":
			if figure(r, "delivered") <= 0 {
				t.Errorf("fanout on %s: %+v", target.Name(), r.Figures)
			}
		case "reconnect-storm":
			if figure(r, "reconnected") != 10 || figure(r, "sessions_intact") != 100 {
				t.Errorf("storm on %s: %+v", target.Name(), r.Figures)
			}
		}
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

// TestRowsThreeTargets: with three targets every other target gets its
// own ratio column, and a figure missing on one target has no ratio there.
func TestRowsThreeTargets(t *testing.T) {
	t.Parallel()
	targets := []string{"lastmile", "mosquitto", "mochi"}
	rs := rows("fanin", targets, map[string][]Result{
		"lastmile":  {{Figures: []Figure{{Name: "delivered", Value: 30}, {Name: "dropped_qos1", Value: 0}}}},
		"mosquitto": {{Figures: []Figure{{Name: "delivered", Value: 10}}}},
		"mochi":     {{Figures: []Figure{{Name: "delivered", Value: 20}, {Name: "dropped_qos1", Value: 4}}}},
	})
	if len(rs) != 2 {
		t.Fatalf("rows: %+v", rs)
	}
	if rs[0].Ratio != 3 || rs[0].Ratios["mosquitto"] != 3 || rs[0].Ratios["mochi"] != 1.5 {
		t.Errorf("delivered ratios: %v %v", rs[0].Ratio, rs[0].Ratios)
	}
	if !math.IsNaN(rs[1].Ratios["mosquitto"]) || rs[1].Ratios["mochi"] != 0 {
		t.Errorf("dropped ratios: %v", rs[1].Ratios)
	}
	rep := &Report{Targets: targets, Rows: rs}
	var b strings.Builder
	rep.WriteTable(&b)
	for _, want := range []string{"lastmile/mosquitto", "lastmile/mochi", "3.00", "1.50"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}
