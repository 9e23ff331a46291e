package services_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/lastmile-dm/lastmile/dm/token"
	"github.com/lastmile-dm/lastmile/internal/apitest"
	accessv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/access/v1"
	devicev1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/device/v1"
	"github.com/lastmile-dm/lastmile/services"
)

type env struct {
	conn    *grpc.ClientConn
	httpURL string
	admin   string // bearer with every permission
	reader  string // bearer with devices:read only
	api     *services.API
	ready   atomic.Pointer[error]
}

func start(t *testing.T) *env {
	t.Helper()
	c := apitest.NewCore(t)
	e := &env{admin: c.Token(t, "admin", token.PermAll), reader: c.Token(t, "reader", token.PermDevicesRead)}
	srv := c.Serve(t, services.Config{Ready: func() error {
		if p := e.ready.Load(); p != nil {
			return *p
		}
		return nil
	}})
	e.api, e.conn, e.httpURL = srv.API, srv.Conn, srv.HTTPURL
	return e
}

func as(bearer string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+bearer)
}

func code(err error) codes.Code { return status.Code(err) }

func (e *env) rest(t *testing.T, method, path, bearer, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, e.httpURL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	e := start(t)
	c := devicev1.NewDeviceServiceClient(e.conn)
	_, err := c.ListDevices(context.Background(), &devicev1.ListDevicesRequest{})
	if code(err) != codes.Unauthenticated || !strings.Contains(status.Convert(err).Message(), "bearer") {
		t.Fatalf("no token: %v, want Unauthenticated naming the bearer token", err)
	}
	_, err = c.ListDevices(as("lmt_nope"), &devicev1.ListDevicesRequest{})
	if code(err) != codes.Unauthenticated {
		t.Fatalf("bad token: %v", err)
	}
	if _, err := c.ListDevices(as(e.reader), &devicev1.ListDevicesRequest{}); err != nil {
		t.Fatalf("reader lists: %v", err)
	}
	_, err = c.CreateDevice(as(e.reader), &devicev1.CreateDeviceRequest{Device: &devicev1.Device{Id: "d1"}, GenerateSecret: true})
	if code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "devices:write") {
		t.Fatalf("reader creates: %v, want PermissionDenied naming devices:write", err)
	}
	_, err = accessv1.NewTokenServiceClient(e.conn).CreateToken(as(e.reader), &accessv1.CreateTokenRequest{Name: "x"})
	if code(err) != codes.PermissionDenied {
		t.Fatalf("reader creates a token: %v", err)
	}

	if st, _ := e.rest(t, "GET", "/v1/devices", "", ""); st != http.StatusUnauthorized {
		t.Fatalf("REST without token: %d, want 401", st)
	}
	if st, _ := e.rest(t, "POST", "/v1/devices", e.reader, `{"device":{"id":"d1"},"generate_secret":true}`); st != http.StatusForbidden {
		t.Fatalf("REST create with a read token: %d, want 403", st)
	}
}

func TestDeviceLifecycleOverREST(t *testing.T) {
	t.Parallel()
	e := start(t)
	st, body := e.rest(t, "POST", "/v1/devices", e.admin, `{"device":{"id":"dev1","name":"CPE 1","labels":{"region":"north"}},"generate_secret":true}`)
	if st != http.StatusOK {
		t.Fatalf("create: %d %v", st, body)
	}
	secret, _ := body["secret"].(string)
	if len(secret) < 20 {
		t.Fatalf("generated secret %q too short", secret)
	}
	dev := body["device"].(map[string]any)
	if dev["enabled"] != true || dev["etag"] == "" {
		t.Fatalf("created device: %v", dev)
	}
	if st, body = e.rest(t, "POST", "/v1/devices", e.admin, `{"device":{"id":"dev1"}}`); st != http.StatusConflict {
		t.Fatalf("create twice: %d %v, want 409", st, body)
	}
	if st, body = e.rest(t, "POST", "/v1/devices", e.admin, `{"device":{"id":"bad id/x"}}`); st != http.StatusBadRequest || !strings.Contains(body["message"].(string), "id") {
		t.Fatalf("bad id: %d %v, want 400 naming the id", st, body)
	}
	if st, _ = e.rest(t, "POST", "/v1/devices", e.admin, `{not json`); st != http.StatusBadRequest {
		t.Fatalf("malformed JSON: %d, want 400", st)
	}
	st, body = e.rest(t, "GET", "/v1/devices/dev1", e.reader, "")
	if st != http.StatusOK || body["name"] != "CPE 1" {
		t.Fatalf("get: %d %v", st, body)
	}
	if body["presence"].(map[string]any)["online"] == true {
		t.Fatal("never-connected device shown online")
	}
	if _, hasHash := body["password_hash"]; hasHash || strings.Contains(strings.ToLower(toJSON(body)), "argon") {
		t.Fatalf("credential hash leaked: %v", body)
	}
	st, body = e.rest(t, "GET", "/v1/devices?label_selector=region%3Dnorth", e.reader, "")
	if st != http.StatusOK || len(body["devices"].([]any)) != 1 {
		t.Fatalf("list by selector: %d %v", st, body)
	}
	st, body = e.rest(t, "GET", "/v1/devices?label_selector=region%3Dsouth", e.reader, "")
	if st != http.StatusOK || body["devices"] != nil && len(body["devices"].([]any)) != 0 {
		t.Fatalf("list by non-matching selector: %d %v", st, body)
	}
	if st, _ = e.rest(t, "GET", "/v1/devices?label_selector=%3D%3D", e.reader, ""); st != http.StatusBadRequest {
		t.Fatalf("bad selector: %d, want 400", st)
	}
	if st, _ = e.rest(t, "GET", "/v1/devices/ghost", e.reader, ""); st != http.StatusNotFound {
		t.Fatalf("get missing: %d, want 404", st)
	}
	st, _ = e.rest(t, "DELETE", "/v1/devices/dev1", e.admin, "")
	if st != http.StatusOK {
		t.Fatalf("delete: %d", st)
	}
	if st, _ = e.rest(t, "GET", "/v1/devices/dev1", e.admin, ""); st != http.StatusNotFound {
		t.Fatalf("get after delete: %d, want 404", st)
	}
}

func toJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

func TestUpdateWithEtag(t *testing.T) {
	t.Parallel()
	e := start(t)
	c := devicev1.NewDeviceServiceClient(e.conn)
	ctx := as(e.admin)
	created, err := c.CreateDevice(ctx, &devicev1.CreateDeviceRequest{Device: &devicev1.Device{Id: "d1"}, GenerateSecret: true})
	if err != nil {
		t.Fatal(err)
	}
	etag := created.GetDevice().GetEtag()
	upd, err := c.UpdateDevice(ctx, &devicev1.UpdateDeviceRequest{Device: &devicev1.Device{Id: "d1", Name: "first", Etag: etag}})
	if err != nil || upd.GetName() != "first" || upd.GetEtag() == etag {
		t.Fatalf("update: %v %v", upd, err)
	}
	_, err = c.UpdateDevice(ctx, &devicev1.UpdateDeviceRequest{Device: &devicev1.Device{Id: "d1", Name: "stale", Etag: etag}})
	if code(err) != codes.Aborted {
		t.Fatalf("update with a stale etag: %v, want Aborted", err)
	}
	_, err = c.UpdateDevice(ctx, &devicev1.UpdateDeviceRequest{Device: &devicev1.Device{Id: "d1"}})
	if code(err) != codes.InvalidArgument {
		t.Fatalf("empty update: %v, want InvalidArgument", err)
	}
	sc, err := c.SetDeviceCredentials(ctx, &devicev1.SetDeviceCredentialsRequest{DeviceId: "d1", GenerateSecret: true})
	if err != nil || sc.GetSecret() == "" || sc.GetDevice().GetCredentials().GetPasswordKind() != devicev1.PasswordKind_PASSWORD_KIND_GENERATED {
		t.Fatalf("rotate: %v %v", sc, err)
	}
	kick, err := c.DisconnectDevice(ctx, &devicev1.DisconnectDeviceRequest{DeviceId: "d1"})
	if err != nil || kick.GetWasConnected() {
		t.Fatalf("kick of an offline device: %v %v", kick, err)
	}
}

func TestTokensAndAccess(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := as(e.admin)
	tc := accessv1.NewTokenServiceClient(e.conn)
	created, err := tc.CreateToken(ctx, &accessv1.CreateTokenRequest{Name: "ci", Permissions: []string{token.PermDevicesRead}})
	if err != nil || !strings.HasPrefix(created.GetSecret(), token.Prefix) {
		t.Fatalf("create token: %v %v", created, err)
	}
	dc := devicev1.NewDeviceServiceClient(e.conn)
	if _, err := dc.ListDevices(as(created.GetSecret()), &devicev1.ListDevicesRequest{}); err != nil {
		t.Fatalf("new token: %v", err)
	}
	if _, err := tc.RevokeToken(ctx, &accessv1.RevokeTokenRequest{TokenId: created.GetToken().GetId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := dc.ListDevices(as(created.GetSecret()), &devicev1.ListDevicesRequest{}); code(err) != codes.Unauthenticated {
		t.Fatalf("revoked token: %v, want Unauthenticated", err)
	}
	if _, err := tc.CreateToken(ctx, &accessv1.CreateTokenRequest{Name: "x", Permissions: []string{"everything"}}); code(err) != codes.InvalidArgument {
		t.Fatalf("unknown permission: %v", err)
	}

	ac := accessv1.NewAccessServiceClient(e.conn)
	role, err := ac.PutRole(ctx, &accessv1.PutRoleRequest{Role: &accessv1.Role{Name: "oss-reader", Rules: []*accessv1.TopicRule{
		{Action: accessv1.Action_ACTION_SUBSCRIBE, Effect: accessv1.Effect_EFFECT_ALLOW, Filter: "tele/+/#"}}}})
	if err != nil || len(role.GetRules()) != 1 {
		t.Fatalf("put role: %v %v", role, err)
	}
	if _, err := ac.PutRole(ctx, &accessv1.PutRoleRequest{Role: &accessv1.Role{Name: "r", Rules: []*accessv1.TopicRule{{Filter: "#"}}}}); code(err) != codes.InvalidArgument {
		t.Fatalf("rule without action: %v", err)
	}
	app, err := ac.CreateApplication(ctx, &accessv1.CreateApplicationRequest{Application: &accessv1.Application{Name: "oss", Role: "oss-reader"}})
	if err != nil || app.GetSecret() == "" || !app.GetApplication().GetEnabled() {
		t.Fatalf("create application: %v %v", app, err)
	}
	if _, err := ac.DeleteRole(ctx, &accessv1.DeleteRoleRequest{Name: "oss-reader"}); code(err) != codes.FailedPrecondition {
		t.Fatalf("delete a role in use: %v, want FailedPrecondition", err)
	}
	if _, err := ac.CreateApplication(ctx, &accessv1.CreateApplicationRequest{Application: &accessv1.Application{Name: "x", Role: "nope"}}); code(err) == codes.OK {
		t.Fatal("application with an unknown role was created")
	}
}

func TestHTTPExtras(t *testing.T) {
	t.Parallel()
	e := start(t)
	get := func(path string) (int, string) {
		resp, err := http.Get(e.httpURL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	st, body := get("/openapi.json")
	var spec map[string]any
	if st != http.StatusOK || json.Unmarshal([]byte(body), &spec) != nil || spec["paths"] == nil {
		t.Fatalf("/openapi.json: %d, not an OpenAPI document", st)
	}
	if st, _ := get("/healthz"); st != http.StatusOK {
		t.Fatalf("/healthz: %d", st)
	}
	if st, _ := get("/readyz"); st != http.StatusOK {
		t.Fatalf("/readyz: %d", st)
	}
	notReady := io.ErrUnexpectedEOF
	e.ready.Store(&notReady)
	if st, body := get("/readyz"); st != http.StatusServiceUnavailable || !strings.Contains(body, "unexpected EOF") {
		t.Fatalf("/readyz when not ready: %d %q", st, body)
	}
	e.rest(t, "GET", "/v1/devices", e.reader, "")
	if st, body := get("/metrics"); st != http.StatusOK || !strings.Contains(body, "lastmile_api_requests_total") {
		t.Fatalf("/metrics: %d, no lastmile_api_requests_total", st)
	}
}
