package services_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/lastmile-dm/lastmile/dm/config"
	"github.com/lastmile-dm/lastmile/dm/registry"
	"github.com/lastmile-dm/lastmile/dm/token"
	"github.com/lastmile-dm/lastmile/dm/topic"
	"github.com/lastmile-dm/lastmile/internal/apitest"
	configv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/config/v1"
	"github.com/lastmile-dm/lastmile/services"
)

// groupTargets resolves groups through the registry (queries are the
// node's; this test does not need them).
type groupTargets struct{ reg *registry.Service }

func (g groupTargets) DeviceExists(ctx context.Context, id string) error {
	if _, _, err := g.reg.Get(ctx, id); err != nil {
		return fmt.Errorf("%w: %w", config.ErrNotFound, err)
	}
	return nil
}

func (g groupTargets) ResolveTargets(ctx context.Context, t config.Target, tok string) ([]string, string, error) {
	p, err := g.reg.List(ctx, registry.Query{Group: t.Group, PageToken: tok})
	if err != nil {
		return nil, "", err
	}
	var ids []string
	for _, d := range p.Devices {
		ids = append(ids, d.ID)
	}
	return ids, p.NextToken, nil
}

type sent struct {
	mu  sync.Mutex
	out []string
}

func (s *sent) Publish(to string, _ []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.out = append(s.out, to)
	return nil
}

type configEnv struct {
	*env
	svc    *config.Service
	writer string // config:read and config:write
	viewer string // config:read
}

func startConfig(t *testing.T) *configEnv {
	t.Helper()
	core := apitest.NewCore(t)
	st, reg := core.Store, core.Registry
	ctx := context.Background()
	for i := range 3 {
		if _, _, err := reg.Create(ctx, registry.Device{ID: fmt.Sprintf("gw%d", i), Groups: []string{"lab"}}, registry.Secret{}); err != nil {
			t.Fatal(err)
		}
	}
	svc, err := config.New(config.Config{Store: st, Targets: groupTargets{reg}, Messenger: &sent{}})
	if err != nil {
		t.Fatal(err)
	}
	e := &configEnv{env: &env{}, svc: svc}
	e.writer = core.Token(t, "writer", token.PermConfigRead, token.PermConfigWrite)
	e.viewer = core.Token(t, "viewer", token.PermConfigRead)
	srv := core.Serve(t, services.Config{Configs: svc})
	e.api, e.conn, e.httpURL = srv.API, srv.Conn, srv.HTTPURL
	return e
}

func TestConfigServiceGRPC(t *testing.T) {
	t.Parallel()
	e := startConfig(t)
	c := configv1.NewConfigServiceClient(e.conn)
	w, v := as(e.writer), as(e.viewer)

	_, err := c.CreateProfile(v, &configv1.CreateProfileRequest{Profile: &configv1.Profile{Name: "wan", Format: "yaml"}})
	if code(err) != codes.PermissionDenied {
		t.Fatalf("viewer creates a profile: %v", err)
	}
	for _, bad := range []*configv1.CreateProfileRequest{{}, {Profile: &configv1.Profile{Name: "WAN", Format: "yaml"}},
		{Profile: &configv1.Profile{Name: "wan", Format: "ini"}}, {Profile: &configv1.Profile{Name: "wan", Format: "json", Schema: map[string]string{"a": "int"}}}} {
		if _, err := c.CreateProfile(w, bad); code(err) != codes.InvalidArgument {
			t.Errorf("create %v: %v", bad, err)
		}
	}
	p, err := c.CreateProfile(w, &configv1.CreateProfileRequest{Profile: &configv1.Profile{Name: "wan", Format: "yaml", Schema: map[string]string{"wan.mtu": "integer"}}})
	if err != nil || p.GetCreateTime() == nil {
		t.Fatalf("create: %v %v", p, err)
	}
	if _, err := c.CreateProfile(w, &configv1.CreateProfileRequest{Profile: &configv1.Profile{Name: "wan", Format: "yaml"}}); code(err) != codes.AlreadyExists {
		t.Errorf("duplicate: %v", err)
	}
	_, err = c.CreateVersion(w, &configv1.CreateVersionRequest{Profile: "wan", Content: "wan: {mtu: big}"})
	if code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "wan.mtu must be integer, not string") {
		t.Errorf("schema violation: %v", err)
	}
	if _, err := c.CreateVersion(w, &configv1.CreateVersionRequest{Profile: "nope", Content: "a: 1"}); code(err) != codes.NotFound {
		t.Errorf("missing profile: %v", err)
	}
	if _, err := c.CreateVersion(w, &configv1.CreateVersionRequest{Profile: "wan"}); code(err) != codes.InvalidArgument {
		t.Errorf("empty content: %v", err)
	}
	for i := range 3 {
		res, err := c.CreateVersion(w, &configv1.CreateVersionRequest{Profile: "wan", Content: fmt.Sprintf("wan: {mtu: %d}\n", 1500-i)})
		if err != nil || !res.GetCreated() || res.GetVersion().GetVersion() != int64(i+1) {
			t.Fatalf("version %d: %v %v", i+1, res, err)
		}
	}
	res, err := c.CreateVersion(w, &configv1.CreateVersionRequest{Profile: "wan", Content: "wan: {mtu: 1498}\n"})
	if err != nil || res.GetCreated() || res.GetVersion().GetVersion() != 3 {
		t.Errorf("a retry made a version: %v %v", res, err)
	}
	lv, err := c.ListVersions(v, &configv1.ListVersionsRequest{Profile: "wan", PageSize: 2})
	if err != nil || len(lv.GetVersions()) != 2 || lv.GetNextPageToken() == "" || lv.GetVersions()[0].GetContent() != "" {
		t.Fatalf("list page 1: %v %v", lv, err)
	}
	lv, err = c.ListVersions(v, &configv1.ListVersionsRequest{Profile: "wan", PageSize: 2, PageToken: lv.GetNextPageToken(), WithContent: true})
	if err != nil || len(lv.GetVersions()) != 1 || lv.GetVersions()[0].GetContent() != "wan: {mtu: 1498}\n" {
		t.Fatalf("list page 2: %v %v", lv, err)
	}
	if gp, err := c.GetProfile(v, &configv1.GetProfileRequest{Name: "wan"}); err != nil || gp.GetLatestVersion() != 3 || gp.GetSchema()["wan.mtu"] != "integer" {
		t.Errorf("get profile: %v %v", gp, err)
	}

	if _, err := c.Assign(v, &configv1.AssignRequest{Profile: "wan", Version: 3, Target: &configv1.Target{Group: "lab"}}); code(err) != codes.PermissionDenied {
		t.Errorf("viewer assigns: %v", err)
	}
	if _, err := c.Assign(w, &configv1.AssignRequest{Profile: "wan", Version: 3}); code(err) != codes.InvalidArgument {
		t.Errorf("no target: %v", err)
	}
	if _, err := c.Assign(w, &configv1.AssignRequest{Profile: "wan", Version: 3, Target: &configv1.Target{DeviceId: "ghost"}}); code(err) != codes.NotFound {
		t.Errorf("missing device: %v", err)
	}
	r, err := c.Assign(w, &configv1.AssignRequest{Profile: "wan", Version: 3, Target: &configv1.Target{Group: "lab"}, Rate: 5})
	if err != nil || r.GetDevices() != 3 || r.GetState() != "running" || r.GetRate() != 5 {
		t.Fatalf("assign: %v %v", r, err)
	}
	if err := e.svc.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	err = e.svc.HandleStatus(context.Background(), "gw1", topic.ConfigStatusPayload{ConfigRef: topic.ConfigRef{Rollout: r.GetId(), Profile: "wan", Version: 3, Hash: r.GetHash()},
		State: topic.ConfigRolledBack, Reason: "no confirmation"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.GetRolloutStatus(v, &configv1.GetRolloutStatusRequest{RolloutId: r.GetId(), PageSize: 2})
	if err != nil || st.GetTotals()["pending"] != 2 || st.GetTotals()["rolled_back"] != 1 || st.GetTotals()["applied"] != 0 || len(st.GetDevices()) != 2 || st.GetNextPageToken() == "" {
		t.Fatalf("status: %v %v", st, err)
	}
	if d := st.GetDevices()[1]; d.GetDeviceId() != "gw1" || d.GetState() != "rolled_back" || d.GetReason() != "no confirmation" || !d.GetReleased() {
		t.Errorf("gw1: %v", d)
	}
	if _, err := c.GetRolloutStatus(v, &configv1.GetRolloutStatusRequest{RolloutId: "nope"}); code(err) != codes.NotFound {
		t.Errorf("missing rollout: %v", err)
	}
	if lr, err := c.ListRollouts(v, &configv1.ListRolloutsRequest{}); err != nil || len(lr.GetRollouts()) != 1 {
		t.Errorf("list rollouts: %v %v", lr, err)
	}
}

func TestConfigServiceREST(t *testing.T) {
	t.Parallel()
	e := startConfig(t)
	cases := []struct {
		method, path, bearer, body string
		want                       int
	}{
		{"POST", "/v1/config/profiles", "", `{"profile": {"name": "ntp", "format": "text"}}`, 401},
		{"POST", "/v1/config/profiles", e.viewer, `{"profile": {"name": "ntp", "format": "text"}}`, 403},
		{"POST", "/v1/config/profiles", e.writer, `{"profile": {"name": "ntp", "format": "text"}}`, 200},
		{"POST", "/v1/config/profiles", e.writer, `{"profile": {"name": "ntp", "format": "text"}}`, 409},
		{"POST", "/v1/config/profiles", e.writer, `{"profile": {"name": "x", "format": "text", "schema": {"a": "string"}}}`, 400},
		{"POST", "/v1/config/profiles/ntp/versions", e.writer, `{"content": "server a"}`, 200},
		{"POST", "/v1/config/profiles/nope/versions", e.writer, `{"content": "server a"}`, 404},
		{"POST", "/v1/config/profiles/ntp/versions", e.writer, `{"content": 7}`, 400},
		{"GET", "/v1/config/profiles/ntp/versions?page_size=-1", e.viewer, "", 400},
		{"GET", "/v1/config/profiles/ntp/versions", e.viewer, "", 200},
		{"GET", "/v1/config/profiles/ntp", e.viewer, "", 200},
		{"POST", "/v1/config/rollouts", e.writer, `{"profile": "ntp", "version": 1, "target": {"group": "lab", "device_id": "gw0"}}`, 400},
		{"POST", "/v1/config/rollouts", e.writer, `{"profile": "ntp", "version": 2, "target": {"group": "lab"}}`, 404},
		{"POST", "/v1/config/rollouts", e.writer, `{"profile": "ntp", "version": 1, "target": {"device_id": "gw0"}}`, 200},
		{"GET", "/v1/config/rollouts/nope", e.viewer, "", 404},
		{"GET", "/v1/config/rollouts", e.viewer, "", 200},
	}
	for _, c := range cases {
		if got, body := e.rest(t, c.method, c.path, c.bearer, c.body); got != c.want {
			t.Errorf("%s %s: %d %v, want %d", c.method, c.path, got, body, c.want)
		}
	}
	_, body := e.rest(t, "GET", "/v1/config/rollouts", e.viewer, "")
	rs, _ := body["rollouts"].([]any)
	if len(rs) != 1 {
		t.Fatalf("rollouts %v", body)
	}
	id, _ := rs[0].(map[string]any)["id"].(string)
	code, st := e.rest(t, "GET", "/v1/config/rollouts/"+id, e.viewer, "")
	tot, _ := st["totals"].(map[string]any)
	if code != 200 || tot["pending"] != float64(1) {
		t.Errorf("status %d %v", code, st)
	}
}
