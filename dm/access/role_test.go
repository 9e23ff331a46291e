package access

import "testing"

func TestRoleRules(t *testing.T) {
	t.Parallel()
	r := Role{Name: "oss", Rules: []Rule{
		{Action: ActionSubscribe, Effect: Allow, Filter: "tele/+/#"},
		{Action: ActionAll, Effect: Deny, Filter: "tele/secret/#"},
		{Action: ActionPublish, Effect: Allow, Filter: "ops/+/cmd"},
	}}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	pub := map[string]bool{"ops/a/cmd": true, "ops/a/b/cmd": false, "tele/d1/x": false, "tele/secret/x": false}
	for topic, want := range pub {
		if got := r.MayPublish(topic); got != want {
			t.Errorf("MayPublish(%q) = %v, want %v", topic, got, want)
		}
	}
	sub := map[string]bool{
		"tele/d1/#": true, "tele/+/temp": false /* overlaps deny */, "$share/g/tele/d1/x": true,
		"tele/#": false, "#": false, "tele/secret/x": false, "$dm/d1/#": false, "ops/a/cmd": false,
	}
	for filter, want := range sub {
		if got := r.MaySubscribe(filter); got != want {
			t.Errorf("MaySubscribe(%q) = %v, want %v", filter, got, want)
		}
	}
}

func TestRoleValidate(t *testing.T) {
	t.Parallel()
	bad := []Role{
		{Name: "", Rules: nil},
		{Name: "x", Rules: []Rule{{Action: "read", Effect: Allow, Filter: "a"}}},
		{Name: "x", Rules: []Rule{{Action: ActionAll, Effect: "maybe", Filter: "a"}}},
		{Name: "x", Rules: []Rule{{Action: ActionAll, Effect: Allow, Filter: "a/#/b"}}},
		{Name: "x", Rules: []Rule{{Action: ActionAll, Effect: Allow, Filter: "$share/g/a"}}},
	}
	for _, r := range bad {
		if err := r.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want error", r)
		}
	}
}
