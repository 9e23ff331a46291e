package services

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-dm/lastmile/dm/access"
	"github.com/lastmile-dm/lastmile/dm/registry"
	"github.com/lastmile-dm/lastmile/dm/shadow"
	"github.com/lastmile-dm/lastmile/dm/token"
	"github.com/lastmile-dm/lastmile/internal/store/embedded"
)

// TestEveryMethodHasAPermission fails when a registered method is missing
// from the permission table (it would be refused to every caller) or the
// table names a method that does not exist.
func TestEveryMethodHasAPermission(t *testing.T) {
	st, err := embedded.Open(embedded.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg, _ := registry.New(registry.Config{Store: st, Presence: st})
	acc, _ := access.New(access.Config{Store: st})
	toks, _ := token.New(token.Config{Store: st})
	sh, _ := shadow.New(shadow.Config{Store: st, Devices: st})
	api, err := New(Config{Registry: reg, Access: acc, Tokens: toks, Shadows: sh, Tunnels: newRelay(t), SNMP: newSNMPProxy(t), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for svc, info := range api.GRPCServer().GetServiceInfo() {
		if svc == "grpc.reflection.v1.ServerReflection" || svc == "grpc.reflection.v1alpha.ServerReflection" {
			continue
		}
		for _, m := range info.Methods {
			name := "/" + svc + "/" + m.Name
			seen[name] = true
			perm, ok := permissions[name]
			if !ok {
				t.Errorf("%s has no entry in the permission table", name)
				continue
			}
			known := false
			for _, p := range token.KnownPermissions {
				known = known || p == perm
			}
			if !known {
				t.Errorf("%s requires unknown permission %q", name, perm)
			}
		}
	}
	for name := range permissions {
		if !seen[name] {
			t.Errorf("permission table names %s, which is not registered", name)
		}
	}
	if len(seen) < 20 {
		t.Fatalf("only %d methods registered", len(seen))
	}
}
