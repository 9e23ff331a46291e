package topic

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestCommandTopics(t *testing.T) {
	t.Parallel()
	if got := CommandRequest("d1", "reboot"); got != "$dm/d1/cmd/reboot" {
		t.Errorf("CommandRequest = %q", got)
	}
	if got := CommandRequestV3("d1", "reboot", "r1"); got != "$dm/d1/cmd/reboot/r1" {
		t.Errorf("CommandRequestV3 = %q", got)
	}
	reply := CommandReply("d1", "reboot", "r1")
	if reply != "$dm/d1/cmdreply/reboot/r1" {
		t.Errorf("CommandReply = %q", reply)
	}
	// One subscription receives both request forms, never a reply, and is
	// one a device may hold; a device may publish its reply.
	sub := CommandSubscription("d1")
	for _, req := range []string{CommandRequest("d1", "reboot"), CommandRequestV3("d1", "reboot", "r1")} {
		if !Match(sub, req) {
			t.Errorf("%s does not match %s", sub, req)
		}
	}
	if Match(sub, reply) {
		t.Errorf("%s matches the reply %s", sub, reply)
	}
	if !DeviceMaySubscribe("d1", sub) || !DeviceMayPublish("d1", reply) || DeviceMayPublish("d2", reply) {
		t.Error("device ACL does not fit the command topics")
	}
	if !Match(CommandReplyFilter, reply) || Match(CommandReplyFilter, CommandRequestV3("d1", "reboot", "r1")) {
		t.Error("CommandReplyFilter")
	}
	// The 3.1.1 derivation rule: replace level 3.
	v3 := CommandRequestV3("d1", "reboot", "r1")
	if derived := strings.Replace(v3, "/"+CommandLevel+"/", "/"+ReplyLevel+"/", 1); derived != reply {
		t.Errorf("derived %q, want %q", derived, reply)
	}
}

func TestParseReplyTopic(t *testing.T) {
	t.Parallel()
	good := map[string]ReplyTopic{
		"$dm/d1/cmdreply/reboot/r1":         {"d1", "reboot", "r1"},
		"$dm/a.b-c/cmdreply/x_y/0123456789": {"a.b-c", "x_y", "0123456789"},
	}
	for in, want := range good {
		got, err := ParseReplyTopic(in)
		if err != nil || got != want {
			t.Errorf("ParseReplyTopic(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{
		"", "$dm", "$dm/d1/cmdreply/reboot", "$dm/d1/cmdreply/reboot/r1/x", "$dm/d1/cmd/reboot/r1",
		"tele/d1/cmdreply/reboot/r1", "$dm//cmdreply/reboot/r1", "$dm/d1/cmdreply//r1", "$dm/d1/cmdreply/reboot/",
		"$dm/d:1/cmdreply/reboot/r1", "$dm/d1/cmdreply/re boot/r1", "$dm/d1/cmdreply/" + strings.Repeat("n", 65) + "/r1",
		"$dm/d1/cmdreply/reboot/" + strings.Repeat("r", 65), "$dm/d1/cmdreply/../r1",
	} {
		if _, err := ParseReplyTopic(in); !errors.Is(err, ErrBadReply) {
			t.Errorf("ParseReplyTopic(%q): %v, want ErrBadReply", in, err)
		}
	}
}

func TestParseReply(t *testing.T) {
	t.Parallel()
	good := []struct {
		in      string
		status  int
		payload string
	}{
		{`{"status":200}`, 200, ""},
		{`{"status":200,"payload":null}`, 200, ""},
		{`{"status": 404, "payload": {"error": "no such file"}}`, 404, `{"error":"no such file"}`},
		{`{"payload":[1, 2],"status":0}`, 0, `[1,2]`},
		{`{"status":999,"payload":"x"}`, 999, `"x"`},
		{` {"status":200} `, 200, ""},
	}
	for _, c := range good {
		r, err := ParseReply([]byte(c.in))
		if err != nil || r.Status != c.status || string(r.Payload) != c.payload {
			t.Errorf("ParseReply(%s) = %+v (%s), %v", c.in, r, r.Payload, err)
		}
	}
	for _, in := range []string{
		``, `null`, `{}`, `[]`, `"x"`, `{"status":"200"}`, `{"status":2e2}`, `{"status":200.0}`, `{"status":1.5}`, `{"status":null}`, `{"status":-1}`, `{"status":1000}`,
		`{"status":99999999999999999999}`, `{"status":200,"statu":1}`, `{"status":200}{}`, `{"status":200,"payload":}`,
		`{"status":200`, "\xff",
	} {
		if _, err := ParseReply([]byte(in)); !errors.Is(err, ErrBadReply) {
			t.Errorf("ParseReply(%q): %v, want ErrBadReply", in, err)
		}
	}
}

// FuzzParseReply checks that any input either parses to a reply within the
// bounds whose payload is valid JSON, or fails with ErrBadReply.
func FuzzParseReply(f *testing.F) {
	f.Add(`$dm/d1/cmdreply/reboot/r1`, []byte(`{"status":200,"payload":{"a":1}}`))
	f.Add(`$dm/d1/cmdreply/x/y/z`, []byte(`{"status":1e3}`))
	f.Add(`$dm/+/cmdreply/#/r`, []byte(`{"status":200}{}`))
	f.Add(``, []byte(`null`))
	f.Fuzz(func(t *testing.T, topicName string, payload []byte) {
		rt, err := ParseReplyTopic(topicName)
		if err != nil {
			if !errors.Is(err, ErrBadReply) {
				t.Fatalf("ParseReplyTopic error %v does not wrap ErrBadReply", err)
			}
		} else if CommandReply(rt.DeviceID, rt.Name, rt.RequestID) != topicName {
			t.Fatalf("ParseReplyTopic(%q) = %+v does not round-trip", topicName, rt)
		}
		r, err := ParseReply(payload)
		if err != nil {
			if !errors.Is(err, ErrBadReply) {
				t.Fatalf("ParseReply error %v does not wrap ErrBadReply", err)
			}
			return
		}
		if r.Status < MinReplyStatus || r.Status > MaxReplyStatus {
			t.Fatalf("status %d out of bounds", r.Status)
		}
		if r.Payload != nil && !json.Valid(r.Payload) {
			t.Fatalf("payload %q is not JSON", r.Payload)
		}
		b, _ := json.Marshal(r)
		if r2, err := ParseReply(b); err != nil || r2.Status != r.Status || string(r2.Payload) != string(r.Payload) {
			t.Fatalf("reply %s does not round-trip: %+v %v", b, r2, err)
		}
	})
}
