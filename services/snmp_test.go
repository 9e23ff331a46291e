package services_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lastmile-dm/lastmile/dm/token"
	"github.com/lastmile-dm/lastmile/internal/apitest"
	"github.com/lastmile-dm/lastmile/internal/snmptest"
	"github.com/lastmile-dm/lastmile/internal/tunneltest"
	snmpv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/snmp/v1"
	"github.com/lastmile-dm/lastmile/services"
	"github.com/lastmile-dm/lastmile/tunnel/snmprelay/executor"
	"github.com/lastmile-dm/lastmile/tunnel/snmprelay/proxy"
)

type snmpEnv struct {
	client          snmpv1.SnmpServiceClient
	httpURL         string
	snmpd           string
	reader, writer  string // snmp:read; snmp:read + snmp:write
	devicesReadOnly string
}

// startSNMP serves SnmpService over a real broker to device gw1, whose
// executor asks a real snmpd, and device gw-dead, whose target is down.
func startSNMP(t *testing.T) *snmpEnv {
	t.Helper()
	e := &snmpEnv{snmpd: snmptest.SNMPD(t, "rocommunity public 127.0.0.1\nrwcommunity private 127.0.0.1\nsysLocation lab-rack-7\n", "public")}
	b := tunneltest.Broker(t)
	for dev, target := range map[string]string{"gw1": e.snmpd, "gw-dead": snmptest.FreeUDP(t)} {
		ex, err := executor.New(executor.Config{DeviceID: dev, PubSub: tunneltest.Connect(t, b, dev), Target: target,
			Community: "public", WriteCommunity: "private", Timeout: 300 * time.Millisecond, Logger: tunneltest.Quiet})
		if err != nil {
			t.Fatal(err)
		}
		if err := ex.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ex.Close() })
	}
	p, err := proxy.New(proxy.Config{PubSub: tunneltest.Platform{B: b}, Connected: b.Connected, Timeout: 3 * time.Second, Logger: tunneltest.Quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)

	c := apitest.NewCore(t)
	e.reader = c.Token(t, "r", token.PermSNMPRead)
	e.writer = c.Token(t, "w", token.PermSNMPRead, token.PermSNMPWrite)
	e.devicesReadOnly = c.Token(t, "d", token.PermDevicesRead)
	srv := c.Serve(t, services.Config{SNMP: p, Logger: tunneltest.Quiet})
	e.httpURL = srv.HTTPURL
	e.client = snmpv1.NewSnmpServiceClient(srv.Conn)
	return e
}

func TestSnmpServiceOverGRPC(t *testing.T) {
	t.Parallel()
	e := startSNMP(t)
	r, err := e.client.Get(as(e.reader), &snmpv1.GetRequest{DeviceId: "gw1", Oids: []string{"1.3.6.1.2.1.1.6.0", "1.3.6.1.2.1.1.99.0"}})
	if err != nil {
		t.Fatal(err)
	}
	if vs := r.GetVarbinds(); len(vs) != 2 || vs[0].GetText() != "lab-rack-7" || vs[0].GetType() != snmpv1.Type_TYPE_OCTET_STRING ||
		vs[1].GetType() != snmpv1.Type_TYPE_NO_SUCH_OBJECT || r.GetErrorStatus() != 0 {
		t.Fatalf("Get: %v", r)
	}

	stream, err := e.client.Walk(as(e.reader), &snmpv1.WalkRequest{DeviceId: "gw1", Oid: "1.3.6.1.2.1.1"})
	if err != nil {
		t.Fatal(err)
	}
	var oids []string
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		oids = append(oids, m.GetVarbind().GetOid())
	}
	direct, _ := snmptest.Tool(t, "snmpwalk", "-v2c", "-c", "public", e.snmpd, "1.3.6.1.2.1.1")
	if want := strings.Count(direct, "\n") + 1; len(oids) != want || !strings.HasPrefix(direct, oids[0]+" ") {
		t.Fatalf("Walk: %d varbinds from %v, snmpwalk has %d", len(oids), oids[:min(3, len(oids))], want)
	}

	set := &snmpv1.SetRequest{DeviceId: "gw1", Varbinds: []*snmpv1.Varbind{{Oid: "1.3.6.1.2.1.1.4.0", Type: snmpv1.Type_TYPE_OCTET_STRING,
		Value: &snmpv1.Varbind_Bytes{Bytes: []byte("grpc@example.net")}}}}
	if _, err := e.client.Set(as(e.reader), set); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Set with snmp:read only: %v", err)
	}
	if sr, err := e.client.Set(as(e.writer), set); err != nil || sr.GetErrorStatus() != 0 {
		t.Fatalf("Set: %v %v", sr, err)
	}
	if out, _ := snmptest.Tool(t, "snmpget", "-v2c", "-c", "public", e.snmpd, "1.3.6.1.2.1.1.4.0"); !strings.Contains(out, "grpc@example.net") {
		t.Fatalf("snmpd after Set: %s", out)
	}
	// An SNMP error is an answer, not a gRPC error.
	bad := &snmpv1.SetRequest{DeviceId: "gw1", Varbinds: []*snmpv1.Varbind{{Oid: "1.3.6.1.2.1.1.3.0", Type: snmpv1.Type_TYPE_TIMETICKS,
		Value: &snmpv1.Varbind_Uint{Uint: 5}}}}
	if sr, err := e.client.Set(as(e.writer), bad); err != nil || sr.GetErrorStatus() == 0 || sr.GetError() == "" || sr.GetErrorIndex() != 1 {
		t.Fatalf("Set of a read-only object: %v %v", sr, err)
	}

	for _, c := range []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"no permission", func() error {
			_, err := e.client.Get(as(e.devicesReadOnly), &snmpv1.GetRequest{DeviceId: "gw1", Oids: []string{"1.3.6.1"}})
			return err
		}, codes.PermissionDenied},
		{"bad OID", func() error {
			_, err := e.client.Get(as(e.reader), &snmpv1.GetRequest{DeviceId: "gw1", Oids: []string{"sysName.0"}})
			return err
		}, codes.InvalidArgument},
		{"no OIDs", func() error {
			_, err := e.client.Get(as(e.reader), &snmpv1.GetRequest{DeviceId: "gw1"})
			return err
		}, codes.InvalidArgument},
		{"bad device", func() error {
			_, err := e.client.Get(as(e.reader), &snmpv1.GetRequest{DeviceId: "a/b", Oids: []string{"1.3.6.1"}})
			return err
		}, codes.InvalidArgument},
		{"offline", func() error {
			_, err := e.client.Get(as(e.reader), &snmpv1.GetRequest{DeviceId: "nodev", Oids: []string{"1.3.6.1"}})
			return err
		}, codes.Unavailable},
		{"target down", func() error {
			_, err := e.client.Get(as(e.reader), &snmpv1.GetRequest{DeviceId: "gw-dead", Oids: []string{"1.3.6.1"}})
			return err
		}, codes.Unavailable},
		{"set exception type", func() error {
			_, err := e.client.Set(as(e.writer), &snmpv1.SetRequest{DeviceId: "gw1", Varbinds: []*snmpv1.Varbind{{Oid: "1.3.6.1", Type: snmpv1.Type_TYPE_END_OF_MIB_VIEW}}})
			return err
		}, codes.InvalidArgument},
		{"set nothing", func() error {
			_, err := e.client.Set(as(e.writer), &snmpv1.SetRequest{DeviceId: "gw1"})
			return err
		}, codes.InvalidArgument},
		{"walk bad OID", func() error {
			s, err := e.client.Walk(as(e.reader), &snmpv1.WalkRequest{DeviceId: "gw1", Oid: "x"})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}, codes.InvalidArgument},
	} {
		if got := status.Code(c.call()); got != c.code {
			t.Errorf("%s: %v, want %v", c.name, got, c.code)
		}
	}
}

// TestSnmpServiceOverREST: the gateway's routes, the walk as a stream of
// JSON objects.
func TestSnmpServiceOverREST(t *testing.T) {
	t.Parallel()
	e := startSNMP(t)
	do := func(path, bearer, body string) (int, string) {
		req, _ := http.NewRequest("POST", e.httpURL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := do("/v1/devices/gw1/snmp:get", e.reader, `{"oids":["1.3.6.1.2.1.1.6.0"]}`)
	if code != 200 || !strings.Contains(body, `"text":"lab-rack-7"`) {
		t.Fatalf("get: %d %s", code, body)
	}
	code, body = do("/v1/devices/gw1/snmp:walk", e.reader, `{"oid":"1.3.6.1.2.1.1.9.1.3"}`)
	if code != 200 {
		t.Fatalf("walk: %d %s", code, body)
	}
	n := 0
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		var m struct {
			Result struct {
				Varbind struct {
					OID string `json:"oid"`
				} `json:"varbind"`
			} `json:"result"`
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil || !strings.HasPrefix(m.Result.Varbind.OID, ".1.3.6.1.2.1.1.9.1.3.") {
			t.Fatalf("walk line %q: %v", sc.Text(), err)
		}
		n++
	}
	if n < 5 {
		t.Fatalf("walk: %d varbinds: %s", n, body)
	}
	code, body = do("/v1/devices/gw1/snmp:set", e.reader, `{"varbinds":[{"oid":"1.3.6.1.2.1.1.4.0","type":"TYPE_OCTET_STRING","bytes":"eA=="}]}`)
	if code != http.StatusForbidden {
		t.Fatalf("set without snmp:write: %d %s", code, body)
	}
	code, body = do("/v1/devices/nodev/snmp:get", e.reader, `{"oids":["1.3.6.1.2.1.1.6.0"]}`)
	if code != http.StatusServiceUnavailable {
		t.Fatalf("offline device: %d %s", code, body)
	}
}
