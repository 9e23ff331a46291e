package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/lastmile-dm/lastmile/internal/redistest"
)

// TestKill9ShadowDurability: every shadow update a device got
// update/accepted for survives SIGKILL. Several devices update at once
// (so their writes share group commits) while the server is killed, and
// after a restart on the same store each shadow is at least at the last
// version that was accepted, holding at least that update's state.
func TestKill9ShadowDurability(t *testing.T) {
	t.Parallel()
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		testKill9Shadow(t, func(t *testing.T) *server { return startServer(t, dir) })
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		addr := redistest.Start(t)
		dir := t.TempDir()
		testKill9Shadow(t, func(t *testing.T) *server {
			return startServer(t, dir, "--store", "redis", "--redis-addr", addr)
		})
	})
}

// shadowAck is one update/accepted: the version it made and its token.
type shadowAck struct {
	Version     uint64 `json:"version"`
	ClientToken string `json:"clientToken"`
}

func testKill9Shadow(t *testing.T, start func(t *testing.T) *server) {
	const (
		devices = 4
		n       = 400 // updates per device at most
		killAt  = 60  // total accepted updates before the kill
	)
	s := start(t)
	type dev struct {
		id      string
		c       *paho.Client
		acks    chan shadowAck
		last    shadowAck // the last accepted
		lastSeq int
	}
	devs := make([]*dev, devices)
	for i := range devs {
		d := &dev{id: fmt.Sprintf("kd%d", i), acks: make(chan shadowAck, 1), lastSeq: -1}
		secret := s.createDevice(t, d.id)
		c, _, err := mqttConnect(t, s.addr("mqtt"), mqttOpts{clientID: d.id, username: d.id, password: secret, cleanStart: true,
			onPublish: func(pr paho.PublishReceived) (bool, error) {
				var a shadowAck
				if pr.Packet.Topic == "$dm/"+d.id+"/shadow/update/accepted" && json.Unmarshal(pr.Packet.Payload, &a) == nil {
					select {
					case d.acks <- a:
					default: // only one update is in flight
					}
				}
				return true, nil
			}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$dm/" + d.id + "/shadow/update/accepted", QoS: 1}}})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		d.c = c
		devs[i] = d
	}

	// Each device sends update after update, each after the previous one
	// was accepted; the server is killed once killAt were accepted in all.
	var (
		mu       sync.Mutex
		accepted int
		kill     sync.Once
		wg       sync.WaitGroup
	)
	for _, d := range devs {
		wg.Go(func() {
			for seq := range n {
				tok := strconv.Itoa(seq)
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				_, err := d.c.Publish(ctx, &paho.Publish{Topic: "$dm/" + d.id + "/shadow/update", QoS: 1,
					Payload: []byte(`{"state":{"reported":{"seq":` + tok + `}},"clientToken":"` + tok + `"}`)})
				if err != nil {
					cancel()
					return
				}
				select {
				case a := <-d.acks:
					cancel()
					if a.ClientToken != tok {
						t.Errorf("%s: accepted token %q, want %q", d.id, a.ClientToken, tok)
						return
					}
					d.last, d.lastSeq = a, seq
				case <-ctx.Done():
					cancel()
					return
				}
				mu.Lock()
				accepted++
				if accepted == killAt {
					kill.Do(func() { go func() { _ = s.cmd.Process.Signal(syscall.SIGKILL) }() })
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	<-s.exited
	if accepted < killAt {
		t.Fatalf("only %d updates accepted before the kill", accepted)
	}
	t.Logf("%d updates accepted before SIGKILL", accepted)

	s2 := start(t)
	s2.bearer = s.bootstrap() // printed only on the first start
	for _, d := range devs {
		if d.lastSeq < 0 {
			continue
		}
		code, out := s2.api(t, "GET", "/v1/devices/"+d.id+"/shadow", "")
		if code != 200 {
			t.Fatalf("%s: GET shadow after restart: %d %v", d.id, code, out)
		}
		v, _ := strconv.ParseUint(fmt.Sprint(out["version"]), 10, 64)
		rep, _ := out["reported"].(map[string]any)
		seq, _ := rep["seq"].(float64)
		if v < d.last.Version || int(seq) < d.lastSeq {
			t.Errorf("%s after restart: version %d, reported.seq %v; accepted before the kill: version %d, seq %d",
				d.id, v, seq, d.last.Version, d.lastSeq)
		}
	}
}
