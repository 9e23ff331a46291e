package serveout

import "testing"

func TestWatch(t *testing.T) {
	t.Parallel()
	var w Watch
	for _, line := range []string{
		`not json at all`,
		`{"msg":"listening"`, // cut short: ignored
		`{"time":"x","level":"INFO","msg":"started","mqtt":"127.0.0.1:1"}`,
		`│  export LASTMILE_TOKEN=lmt_ab12_Secret-Part_x  │`,
	} {
		w.Line(line)
	}
	if w.Listening() {
		t.Fatal("listening before the listening record")
	}
	if got := w.Token(); got != "lmt_ab12_Secret-Part_x" {
		t.Errorf("token %q", got)
	}
	w.Line(`{"time":"x","level":"INFO","msg":"listening","node":"n1","store":"embedded","mqtt":"127.0.0.1:1883","grpc":"127.0.0.1:9090","http":"127.0.0.1:8080"}`)
	if !w.Listening() || w.Addr("mqtt") != "127.0.0.1:1883" || w.Addr("http") != "127.0.0.1:8080" || w.Addr("node") != "" || w.Addr("ws") != "" {
		t.Errorf("addrs after listening: mqtt=%q http=%q node=%q ws=%q", w.Addr("mqtt"), w.Addr("http"), w.Addr("node"), w.Addr("ws"))
	}
	w.Reset()
	if w.Listening() || w.Token() == "" {
		t.Error("Reset must forget the addresses and keep the token")
	}
}
