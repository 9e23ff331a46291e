package node

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/lastmile-dm/lastmile/cmd/lastmile/internal/config"
)

// TestPprof: debug.pprof_addr serves the profile index; without it, the
// node listens on no pprof address and the API port does not serve it.
func TestPprof(t *testing.T) {
	t.Parallel()
	on := startNode(t, config.EngineEmbedded, func(c *config.Config) { c.Debug.PprofAddr = "127.0.0.1:0" })
	a, ok := on.n.Addrs()["pprof"]
	if !ok {
		t.Fatal("no pprof address with debug.pprof_addr set")
	}
	resp, err := http.Get("http://" + a.String() + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile") {
		t.Fatalf("pprof: %d %.200s", resp.StatusCode, body)
	}

	off := startNode(t, config.EngineEmbedded, nil)
	if _, ok := off.n.Addrs()["pprof"]; ok {
		t.Fatal("pprof listens although debug.pprof_addr is empty")
	}
	resp, err = http.Get(off.httpURL + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Fatal("the API port serves /debug/pprof/")
	}
}
