package tunneltest_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/lastmile-dm/lastmile/internal/tunneltest"
)

// TestConcurrentWritersKeepPacketsWhole: a tunnel device publishes from
// several goroutines at once (stream data, window updates, pings, acks).
// Every QoS 1 publish must be acknowledged; a packet torn by another
// writer's bytes makes the broker drop the connection and the publishes
// time out, which is how CI runs failed before the device's connection
// took paho's write lock.
func TestConcurrentWritersKeepPacketsWhole(t *testing.T) {
	t.Parallel()
	b := tunneltest.Broker(t)
	d := tunneltest.Connect(t, b, "dev1")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				if err := d.Publish(context.Background(), fmt.Sprintf("$dm/dev1/tunnel/s%d/up", g), 1, make([]byte, 100+i)); err != nil {
					errs <- fmt.Errorf("writer %d, message %d: %w", g, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
