package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCert writes a self-signed certificate and key into dir.
func writeCert(t testing.TB, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lastmile test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestParseAndValidate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key := writeCert(t, dir)
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := strings.NewReplacer("CERT", cert, "KEY", key, "GARBAGE", garbage, "MISSING", filepath.Join(dir, "missing.pem"))

	tests := []struct {
		name string
		yaml string
		// wantErr is a substring of the error of Parse or Validate; "" = valid.
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{name: "empty file", yaml: "", check: func(t *testing.T, c Config) {
			if c.MQTT.TCPAddr != ":1883" || c.GRPC.Addr != ":9090" || c.HTTP.Addr != ":8080" || c.Store.Engine != "embedded" {
				t.Errorf("defaults not kept: %+v", c)
			}
		}},
		{name: "full", yaml: `
node_name: n1
data_dir: /var/lib/lastmile
store: {engine: embedded}
mqtt:
  tcp_addr: "127.0.0.1:1884"
  ws_addr: ""
  tls: {cert_file: CERT, key_file: KEY, client_ca_file: CERT, require_client_cert: true}
  limits: {max_packet_size: 65536, max_inflight: 32, max_session_expiry: 24h, connect_rate_per_ip: 5, connect_burst_per_ip: 10}
grpc: {addr: ":0", tls: {cert_file: CERT, key_file: KEY}}
http: {addr: ""}
log: {level: debug, format: json}
access:
  roles:
    - name: reader
      rules:
        - {action: subscribe, effect: allow, topics: ["tele/+/#", "tele/x/y"]}
        - {action: all, effect: deny, topics: ["tele/secret/#"]}
  anonymous: {enabled: true, role: reader}
`, check: func(t *testing.T, c Config) {
			if c.MQTT.Limits.MaxSessionExpiry != 24*time.Hour || c.MQTT.WSAddr != "" || c.Log.Format != "json" {
				t.Errorf("not parsed: %+v", c)
			}
			roles := c.Access.DomainRoles()
			if len(roles) != 1 || len(roles[0].Rules) != 3 || !roles[0].MaySubscribe("tele/x/y") || roles[0].MaySubscribe("tele/secret/a") {
				t.Errorf("roles: %+v", roles)
			}
			if _, err := c.MQTT.TLS.Build(); err != nil {
				t.Error(err)
			}
		}},
		{name: "unknown top key", yaml: "node_name: a\nmqqt: {}\n", wantErr: `line 2: unknown key "mqqt"`},
		{name: "unknown nested key", yaml: "mqtt:\n  tcp_adr: x\n", wantErr: `line 2: unknown key "tcp_adr"`},
		{name: "two documents", yaml: "log: {level: info}\n---\nlog: {level: debug}\n", wantErr: "more than one YAML document"},
		{name: "bad yaml", yaml: "mqtt: [", wantErr: "parse configuration"},
		{name: "wrong type", yaml: "mqtt:\n  limits:\n    max_inflight: many\n", wantErr: "line 3: cannot unmarshal !!str `many` into uint16 (key mqtt.limits.max_inflight)"},
		{name: "bad duration", yaml: "mqtt: {limits: {max_session_expiry: soon}}", wantErr: "soon"},
		{name: "bad engine", yaml: "store: {engine: mysql}", wantErr: `store.engine: "mysql"`},
		{name: "redis without addr", yaml: "store: {engine: redis}", wantErr: "store.redis.addr: required"},
		{name: "redis bad addr", yaml: "store: {engine: redis, redis: {addr: localhost}}", wantErr: "store.redis.addr"},
		{name: "redis db", yaml: "store: {engine: redis, redis: {addr: 'h:6379', db: 99}}", wantErr: "store.redis.db"},
		{name: "redis two passwords", yaml: "store: {engine: redis, redis: {addr: 'h:6379', password: a, password_file: CERT}}", wantErr: "store.redis.password_file: set either"},
		{name: "redis password file missing", yaml: "store: {engine: redis, redis: {addr: 'h:6379', password_file: MISSING}}", wantErr: "store.redis.password_file"},
		{name: "bad listen addr", yaml: "mqtt: {tcp_addr: '1883'}", wantErr: "mqtt.tcp_addr"},
		{name: "bad port", yaml: "grpc: {addr: ':99999'}", wantErr: "grpc.addr"},
		{name: "bad pprof addr", yaml: "debug: {pprof_addr: '6060'}", wantErr: "debug.pprof_addr"},
		{name: "public pprof addr", yaml: "debug: {pprof_addr: ':6060'}", wantErr: "loopback only"},
		{name: "all mqtt off", yaml: "mqtt: {tcp_addr: '', ws_addr: ''}", wantErr: "every MQTT listener is off"},
		{name: "tls cert missing", yaml: "mqtt: {tls: {cert_file: MISSING, key_file: KEY}}", wantErr: "mqtt.tls.cert_file/key_file"},
		{name: "tls key only", yaml: "http: {tls: {key_file: KEY}}", wantErr: "http.tls.cert_file: required"},
		{name: "client ca garbage", yaml: "mqtt: {tls: {cert_file: CERT, key_file: KEY, client_ca_file: GARBAGE}}", wantErr: "mqtt.tls.client_ca_file"},
		{name: "require cert without ca", yaml: "mqtt: {tls: {cert_file: CERT, key_file: KEY, require_client_cert: true}}", wantErr: "require_client_cert"},
		{name: "ws tls without cert", yaml: "mqtt: {ws_tls: true}", wantErr: "mqtt.ws_tls"},
		{name: "packet size", yaml: "mqtt: {limits: {max_packet_size: 10}}", wantErr: "mqtt.limits.max_packet_size"},
		{name: "negative connections", yaml: "mqtt: {limits: {max_connections: -1}}", wantErr: "mqtt.limits.max_connections"},
		{name: "rate without burst", yaml: "mqtt: {limits: {connect_rate_per_ip: 2}}", wantErr: "connect_burst_per_ip"},
		{name: "expiry too long", yaml: "mqtt: {limits: {max_session_expiry: 10000h}}", wantErr: "mqtt.limits.max_session_expiry"},
		{name: "log level", yaml: "log: {level: loud}", wantErr: "log.level"},
		{name: "log format", yaml: "log: {format: xml}", wantErr: "log.format"},
		{name: "node name slash", yaml: "node_name: a/b", wantErr: "node_name"},
		{name: "embedded without data dir", yaml: "data_dir: ''", wantErr: "data_dir"},
		{name: "role bad action", yaml: "access: {roles: [{name: r, rules: [{action: read, effect: allow, topics: [a]}]}]}", wantErr: "access.roles[0]"},
		{name: "role bad filter", yaml: "access: {roles: [{name: r, rules: [{action: all, effect: allow, topics: ['a/#/b']}]}]}", wantErr: "access.roles[0]"},
		{name: "role no topics", yaml: "access: {roles: [{name: r, rules: [{action: all, effect: allow}]}]}", wantErr: "access.roles[0].rules[0].topics"},
		{name: "role twice", yaml: "access: {roles: [{name: r, rules: [{action: all, effect: allow, topics: [a]}]}, {name: r, rules: [{action: all, effect: allow, topics: [a]}]}]}", wantErr: "defined twice"},
		{name: "anonymous unknown role", yaml: "access: {anonymous: {enabled: true, role: nobody}}", wantErr: "access.anonymous.role"},
		{name: "anonymous no role", yaml: "access: {anonymous: {enabled: true}}", wantErr: "access.anonymous.role: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Default()
			err := Parse([]byte(r.Replace(tt.yaml)), &c)
			if err == nil {
				err = c.CheckAndSetDefaults()
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("no error, want one containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error %q does not contain %q", err, tt.wantErr)
			}
			if tt.check != nil && err == nil {
				tt.check(t, c)
			}
		})
	}
}

func TestUnknownKeyIsErrUnknownKey(t *testing.T) {
	t.Parallel()
	c := Default()
	if err := Parse([]byte("nope: 1"), &c); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("got %v, want ErrUnknownKey", err)
	}
}

func TestApplyEnv(t *testing.T) {
	t.Parallel()
	c := Default()
	err := ApplyEnv(&c, []string{
		"PATH=/bin",
		"LASTMILE_MQTT_TCP_ADDR=127.0.0.1:1999",
		"LASTMILE_STORE_ENGINE=redis",
		"LASTMILE_STORE_REDIS_ADDR=127.0.0.1:6379",
		"LASTMILE_STORE_REDIS_DB=3",
		"LASTMILE_DATA_DIR=/d",
		"LASTMILE_LOG_LEVEL=debug",
		"LASTMILE_MQTT_LIMITS_MAX_SESSION_EXPIRY=1h",
		"LASTMILE_MQTT_LIMITS_CONNECT_RATE_PER_IP=2.5",
		"LASTMILE_MQTT_WS_TLS=false",
		"LASTMILE_CONFIG=/etc/lastmile.yaml", // the file path, not a key
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.MQTT.TCPAddr != "127.0.0.1:1999" || c.Store.Engine != "redis" || c.Store.Redis.Addr != "127.0.0.1:6379" ||
		c.Store.Redis.DB != 3 || c.DataDir != "/d" || c.Log.Level != "debug" ||
		c.MQTT.Limits.MaxSessionExpiry != time.Hour || c.MQTT.Limits.ConnectRatePerIP != 2.5 {
		t.Fatalf("env not applied: %+v", c)
	}

	for _, tc := range []struct{ env, want string }{
		{"LASTMILE_MQTT_TCP_ADR=x", "LASTMILE_MQTT_TCP_ADR: unknown configuration key"},
		{"LASTMILE_STORE_REDIS_DB=x", "LASTMILE_STORE_REDIS_DB: store.redis.db"},
		{"LASTMILE_MQTT_LIMITS_MAX_INFLIGHT=70000", "max_inflight"},
		{"LASTMILE_MQTT_WS_TLS=maybe", "mqtt.ws_tls"},
		{"LASTMILE_ACCESS_ROLES=x", "unknown configuration key"},
	} {
		c := Default()
		err := ApplyEnv(&c, []string{tc.env})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want error containing %q", tc.env, err, tc.want)
		}
	}
}

func TestLoadPrecedence(t *testing.T) {
	// Not parallel: t.Setenv.
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("mqtt: {tcp_addr: ':1000', ws_addr: ':1001'}\nlog: {level: warn}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LASTMILE_MQTT_TCP_ADDR", ":2000")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Set("log.level", "error"); err != nil { // as a flag would
		t.Fatal(err)
	}
	if c.MQTT.TCPAddr != ":2000" || c.MQTT.WSAddr != ":1001" || c.Log.Level != "error" || c.GRPC.Addr != ":9090" {
		t.Fatalf("precedence wrong: %+v", c)
	}
	if err := c.Set("no.such", "x"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Set of unknown key: %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("missing file loaded")
	}
}

func TestKeysHaveEnvNames(t *testing.T) {
	t.Parallel()
	keys := Keys()
	for _, want := range []string{"mqtt.tcp_addr", "store.redis.addr", "data_dir", "log.level", "mqtt.limits.max_session_expiry", "access.anonymous.role"} {
		found := false
		for _, k := range keys {
			found = found || k == want
		}
		if !found {
			t.Errorf("key %s missing from %v", want, keys)
		}
	}
	if EnvName("mqtt.tcp_addr") != "LASTMILE_MQTT_TCP_ADDR" {
		t.Error(EnvName("mqtt.tcp_addr"))
	}
}

// TestExampleConfig loads the example shipped in deployments/.
func TestExampleConfig(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../../../deployments/lastmile.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := Default()
	if err := Parse(data, &c); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckAndSetDefaults(); err != nil {
		t.Fatal(err)
	}
}

func FuzzLoad(f *testing.F) {
	for _, seed := range []string{
		"", "node_name: a", "mqtt: {tcp_addr: ':1883', limits: {max_session_expiry: 1h}}",
		"access: {roles: [{name: r, rules: [{action: all, effect: allow, topics: ['#']}]}]}",
		"store: {engine: redis, redis: {addr: 'h:1', db: 2}}", "a: b", "---\n---\n", "mqtt: [", "log: {level: &a x, format: *a}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := Default()
		if err := Parse(data, &c); err != nil {
			return
		}
		// Validation must never panic on whatever parsed; file paths in
		// fuzzed input only ever fail to open.
		_ = c.Validate()
	})
}

// TestDocsCoverEveryKey keeps docs/configuration.md complete.
func TestDocsCoverEveryKey(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	for _, k := range Keys() {
		if strings.Contains(doc, "`"+k+"`") {
			continue
		}
		// Pairs are documented on one row: `x.cert_file`, `key_file`.
		if base, ok := strings.CutSuffix(k, ".key_file"); ok && strings.Contains(doc, "`"+base+".cert_file`, `key_file`") {
			continue
		}
		t.Errorf("docs/configuration.md does not document %s", k)
	}
}
