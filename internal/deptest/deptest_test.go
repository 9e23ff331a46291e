// Package deptest enforces lastmile's dependency direction with `go list`:
// the domain imports no transport, the broker never imports the domain, and
// the agent links none of the server's heavy dependencies.
package deptest

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/lastmile-dm/lastmile"

// mochiFork is lastmile's fork of the mochi broker (third_party/mochi): the
// same weight as upstream mochi, so every rule that forbids one forbids both.
const mochiFork = module + "/third_party/mochi"

type rule struct {
	pattern   string   // go list pattern whose packages are checked
	forbidden []string // import path prefixes none of them may depend on
	why       string
}

var rules = []rule{
	{module + "/dm/...", []string{
		"google.golang.org/grpc", "github.com/grpc-ecosystem/", "github.com/mochi-mqtt/", mochiFork,
		"github.com/redis/", "github.com/cockroachdb/pebble", module + "/broker", module + "/services",
		module + "/internal/store", module + "/proto/",
	}, "dm is the domain: pure Go, no transport, no storage engine"},
	{module + "/broker/...", []string{module + "/dm", module + "/services", "google.golang.org/grpc"},
		"the broker defines the interfaces it needs and never imports the domain"},
	{module + "/internal/store/...", []string{module + "/services", "google.golang.org/grpc", "github.com/grpc-ecosystem/"},
		"stores implement domain interfaces and know no transport"},
	{module + "/tunnel/...", []string{"github.com/grpc-ecosystem/", "github.com/redis/", "github.com/mochi-mqtt/", mochiFork, "google.golang.org/grpc",
		"github.com/cockroachdb/pebble", module + "/broker", module + "/services", module + "/internal/store", module + "/proto/"},
		"the tunnel is linked by the agent and talks MQTT only through its PubSub interface"},
	{module + "/agent/...", []string{"github.com/grpc-ecosystem/", "github.com/redis/", "github.com/mochi-mqtt/", mochiFork, "google.golang.org/grpc", "github.com/cockroachdb/pebble"},
		"the agent runs on small CPEs: none of the server's dependencies"},
	{module + "/cmd/lastmile-agent/...", []string{"github.com/grpc-ecosystem/", "github.com/redis/", "github.com/mochi-mqtt/", mochiFork, "google.golang.org/grpc", "github.com/cockroachdb/pebble"},
		"the agent binary links none of the server's dependencies"},
}

type pkg struct {
	ImportPath string
	Deps       []string
}

func list(t *testing.T, pattern string) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Deps", pattern)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pattern, err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestDependencyDirection(t *testing.T) {
	t.Parallel()
	for _, r := range rules {
		pkgs := list(t, r.pattern)
		if len(pkgs) == 0 || (len(pkgs) == 1 && pkgs[0].ImportPath == strings.TrimSuffix(r.pattern, "/...") && len(pkgs[0].Deps) == 0) {
			t.Logf("%s: no packages yet; the rule applies once it exists", r.pattern)
			continue
		}
		for _, p := range pkgs {
			for _, d := range p.Deps {
				for _, f := range r.forbidden {
					if strings.HasPrefix(d, f) {
						t.Errorf("%s depends on %s: %s", p.ImportPath, d, r.why)
					}
				}
			}
		}
	}
}

// TestRulesBite proves the check can fail: the server binary does link
// what the domain must not.
func TestRulesBite(t *testing.T) {
	t.Parallel()
	pkgs := list(t, module+"/broker")
	found := false
	for _, d := range pkgs[0].Deps {
		if strings.HasPrefix(d, mochiFork) {
			found = true
		}
	}
	if !found {
		t.Fatal("broker does not depend on mochi: the dependency listing is broken")
	}
}

// TestAgentRuleApplies proves the agent's rule checks a real dependency
// list: the agent binary exists and links its MQTT client, so a forbidden
// import would show up in the same list.
func TestAgentRuleApplies(t *testing.T) {
	t.Parallel()
	pkgs := list(t, module+"/cmd/lastmile-agent")
	found := false
	for _, d := range pkgs[0].Deps {
		found = found || d == module+"/third_party/paho/paho"
	}
	if !found {
		t.Fatal("cmd/lastmile-agent does not list its MQTT client (third_party/paho) among its dependencies: the agent rule checks nothing")
	}
}
