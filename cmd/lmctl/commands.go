package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	accessv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/access/v1"
	devicev1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/device/v1"
)

type command func(c *cli, args []string, stderr io.Writer) error

var commands = map[string]command{
	"devices create":       devicesCreate,
	"devices get":          devicesGet,
	"devices list":         devicesList,
	"devices update":       devicesUpdate,
	"devices delete":       devicesDelete,
	"devices set-password": devicesSetPassword,
	"devices kick":         devicesKick,
	"tokens create":        tokensCreate,
	"tokens list":          tokensList,
	"tokens revoke":        tokensRevoke,
	"roles put":            rolesPut,
	"roles get":            rolesGet,
	"roles list":           rolesList,
	"roles delete":         rolesDelete,
	"apps create":          appsCreate,
	"apps get":             appsGet,
	"apps list":            appsList,
	"apps update":          appsUpdate,
	"apps delete":          appsDelete,
	"apps rotate-secret":   appsRotate,
}

func one(pos []string, what string) (string, error) {
	if len(pos) != 1 {
		return "", usagef("want exactly one %s, got %d arguments", what, len(pos))
	}
	return pos[0], nil
}

// named runs a verb that takes exactly one positional argument (what, e.g.
// "device ID") and no flags of its own: run gets it and a context bounded
// by --timeout.
func named(c *cli, verb, what string, args []string, stderr io.Writer, run func(ctx context.Context, arg string) error) error {
	pos, err := parse(verbFlags(verb, stderr), args)
	if err != nil {
		return err
	}
	arg, err := one(pos, what)
	if err != nil {
		return err
	}
	ctx, cancel := c.ctx()
	defer cancel()
	return run(ctx, arg)
}

func labels(m multi) (map[string]string, error) {
	out := map[string]string{}
	for _, l := range m {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return nil, usagef("--label %q: want key=value", l)
		}
		out[k] = v
	}
	return out, nil
}

func (c *cli) devices() devicev1.DeviceServiceClient { return devicev1.NewDeviceServiceClient(c.conn) }

func deviceRows(ds ...*devicev1.Device) [][]string {
	rows := make([][]string, 0, len(ds))
	for _, d := range ds {
		p := d.GetPresence()
		state := "offline"
		if p.GetOnline() {
			state = "online"
		}
		enabled := "yes"
		if !d.GetEnabled() {
			enabled = "no"
		}
		seen := ts(p.GetLastConnectTime())
		if !p.GetOnline() {
			seen = ts(p.GetLastDisconnectTime())
		}
		rows = append(rows, []string{d.GetId(), orDash(d.GetName()), enabled, state, orDash(p.GetRemoteAddr()), seen, kv(d.GetLabels())})
	}
	return rows
}

var deviceHeader = []string{"ID", "NAME", "ENABLED", "PRESENCE", "REMOTE", "SINCE", "LABELS"}

func devicesCreate(c *cli, args []string, stderr io.Writer) error {
	fs := verbFlags("devices create", stderr)
	name := fs.String("name", "", "display name")
	var ls, groups multi
	fs.Var(&ls, "label", "label key=value (repeatable)")
	fs.Var(&groups, "group", "group (repeatable)")
	password := fs.String("password", "", "a chosen password (default: generate a high-entropy secret)")
	disabled := fs.Bool("disabled", false, "create the device disabled")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	id, err := one(pos, "device ID")
	if err != nil {
		return err
	}
	lm, err := labels(ls)
	if err != nil {
		return err
	}
	enabled := !*disabled
	req := &devicev1.CreateDeviceRequest{Device: &devicev1.Device{Id: id, Name: *name, Labels: lm, Groups: groups, Enabled: &enabled},
		Password: *password, GenerateSecret: *password == ""}
	ctx, cancel := c.ctx()
	defer cancel()
	resp, err := c.devices().CreateDevice(ctx, req)
	if err != nil {
		return err
	}
	if err := c.emit(resp, deviceHeader, deviceRows(resp.GetDevice())); err != nil {
		return err
	}
	c.secretNote(resp.GetSecret())
	return nil
}

func devicesGet(c *cli, args []string, stderr io.Writer) error {
	return named(c, "devices get", "device ID", args, stderr, func(ctx context.Context, id string) error {
		d, err := c.devices().GetDevice(ctx, &devicev1.GetDeviceRequest{DeviceId: id})
		if err != nil {
			return err
		}
		return c.emit(d, deviceHeader, deviceRows(d))
	})
}

func devicesList(c *cli, args []string, stderr io.Writer) error {
	fs := verbFlags("devices list", stderr)
	selector := fs.String("selector", "", "label selector, e.g. region=north,tier!=lab")
	group := fs.String("group", "", "only devices in this group")
	online := fs.String("online", "", "yes: only online devices, no: only offline")
	limit := fs.Int("limit", 0, "stop after this many devices (default: all)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("unexpected arguments %q", pos)
	}
	req := &devicev1.ListDevicesRequest{LabelSelector: *selector, Group: *group, PageSize: 500}
	switch *online {
	case "":
	case "yes", "true":
		req.Online = devicev1.OnlineFilter_ONLINE_FILTER_ONLINE
	case "no", "false":
		req.Online = devicev1.OnlineFilter_ONLINE_FILTER_OFFLINE
	default:
		return usagef("--online must be yes or no")
	}
	all := &devicev1.ListDevicesResponse{}
	err = c.pages(func(ctx context.Context, token string) (string, bool, error) {
		req.PageToken = token
		resp, err := c.devices().ListDevices(ctx, req)
		all.Devices = append(all.Devices, resp.GetDevices()...)
		return resp.GetNextPageToken(), *limit > 0 && len(all.Devices) >= *limit, err
	})
	if err != nil {
		return err
	}
	if *limit > 0 && len(all.Devices) > *limit {
		all.Devices = all.Devices[:*limit]
	}
	return c.emit(all, deviceHeader, deviceRows(all.Devices...))
}

func devicesUpdate(c *cli, args []string, stderr io.Writer) error {
	fs := verbFlags("devices update", stderr)
	name := fs.String("name", "", "new display name")
	var ls, groups multi
	fs.Var(&ls, "label", "replace labels with these key=value pairs (repeatable)")
	fs.Var(&groups, "group", "replace groups (repeatable)")
	enable := fs.Bool("enable", false, "enable the device")
	disable := fs.Bool("disable", false, "disable the device (disconnects it)")
	etag := fs.String("etag", "", "apply only if the device is still at this etag")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	id, err := one(pos, "device ID")
	if err != nil {
		return err
	}
	d := &devicev1.Device{Id: id, Etag: *etag}
	var paths []string
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["name"] {
		d.Name, paths = *name, append(paths, "name")
	}
	if set["label"] {
		if d.Labels, err = labels(ls); err != nil {
			return err
		}
		paths = append(paths, "labels")
	}
	if set["group"] {
		d.Groups, paths = groups, append(paths, "groups")
	}
	if *enable && *disable {
		return usagef("--enable and --disable contradict each other")
	}
	if *enable || *disable {
		d.Enabled, paths = proto.Bool(*enable), append(paths, "enabled")
	}
	if len(paths) == 0 {
		return usagef("nothing to update: pass --name, --label, --group, --enable or --disable")
	}
	ctx, cancel := c.ctx()
	defer cancel()
	out, err := c.devices().UpdateDevice(ctx, &devicev1.UpdateDeviceRequest{Device: d, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}})
	if err != nil {
		return err
	}
	return c.emit(out, deviceHeader, deviceRows(out))
}

func devicesDelete(c *cli, args []string, stderr io.Writer) error {
	fs := verbFlags("devices delete", stderr)
	missingOK := fs.Bool("allow-missing", false, "succeed if the device does not exist")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	id, err := one(pos, "device ID")
	if err != nil {
		return err
	}
	ctx, cancel := c.ctx()
	defer cancel()
	resp, err := c.devices().DeleteDevice(ctx, &devicev1.DeleteDeviceRequest{DeviceId: id, AllowMissing: *missingOK})
	if err != nil {
		return err
	}
	return c.emit(resp, []string{"DELETED"}, [][]string{{id}})
}

func devicesSetPassword(c *cli, args []string, stderr io.Writer) error {
	fs := verbFlags("devices set-password", stderr)
	password := fs.String("password", "", "a chosen password (default: generate a high-entropy secret)")
	keep := fs.Bool("keep-connected", false, "do not disconnect the device's current connection")
	fingerprint := fs.String("cert-fingerprint", "", "pin a client certificate (SHA-256 of DER, hex)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	id, err := one(pos, "device ID")
	if err != nil {
		return err
	}
	req := &devicev1.SetDeviceCredentialsRequest{DeviceId: id, Password: *password, GenerateSecret: *password == "",
		CertificateFingerprint: *fingerprint, Disconnect: !*keep}
	ctx, cancel := c.ctx()
	defer cancel()
	resp, err := c.devices().SetDeviceCredentials(ctx, req)
	if err != nil {
		return err
	}
	if err := c.emit(resp, deviceHeader, deviceRows(resp.GetDevice())); err != nil {
		return err
	}
	c.secretNote(resp.GetSecret())
	return nil
}

func devicesKick(c *cli, args []string, stderr io.Writer) error {
	return named(c, "devices kick", "device ID", args, stderr, func(ctx context.Context, id string) error {
		resp, err := c.devices().DisconnectDevice(ctx, &devicev1.DisconnectDeviceRequest{DeviceId: id})
		if err != nil {
			return err
		}
		return c.emit(resp, []string{"ID", "WAS CONNECTED"}, [][]string{{id, strconv.FormatBool(resp.GetWasConnected())}})
	})
}

func (c *cli) tokens() accessv1.TokenServiceClient { return accessv1.NewTokenServiceClient(c.conn) }

func tokenRows(ts_ ...*accessv1.Token) [][]string {
	rows := make([][]string, 0, len(ts_))
	for _, t := range ts_ {
		rows = append(rows, []string{t.GetId(), t.GetName(), strings.Join(t.GetPermissions(), ","), ts(t.GetCreateTime()), ts(t.GetExpireTime()), ts(t.GetRevokeTime())})
	}
	return rows
}

var tokenHeader = []string{"ID", "NAME", "PERMISSIONS", "CREATED", "EXPIRES", "REVOKED"}

func tokensCreate(c *cli, args []string, stderr io.Writer) error {
	fs := verbFlags("tokens create", stderr)
	var perms multi
	fs.Var(&perms, "perm", "permission: *, devices:read, devices:write, tokens:admin, access:admin (repeatable)")
	ttl := fs.Duration("ttl", 0, "lifetime, e.g. 720h (default: no expiry)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	name, err := one(pos, "token name")
	if err != nil {
		return err
	}
	ctx, cancel := c.ctx()
	defer cancel()
	resp, err := c.tokens().CreateToken(ctx, &accessv1.CreateTokenRequest{Name: name, Permissions: perms, TtlSeconds: int64(*ttl / time.Second)})
	if err != nil {
		return err
	}
	if err := c.emit(resp, tokenHeader, tokenRows(resp.GetToken())); err != nil {
		return err
	}
	c.secretNote(resp.GetSecret())
	return nil
}

func tokensList(c *cli, args []string, stderr io.Writer) error {
	fs := verbFlags("tokens list", stderr)
	all := fs.Bool("all", false, "include revoked and expired tokens")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	out := &accessv1.ListTokensResponse{}
	req := &accessv1.ListTokensRequest{PageSize: 500, ShowInactive: *all}
	err := c.pages(func(ctx context.Context, token string) (string, bool, error) {
		req.PageToken = token
		resp, err := c.tokens().ListTokens(ctx, req)
		out.Tokens = append(out.Tokens, resp.GetTokens()...)
		return resp.GetNextPageToken(), false, err
	})
	if err != nil {
		return err
	}
	return c.emit(out, tokenHeader, tokenRows(out.Tokens...))
}

func tokensRevoke(c *cli, args []string, stderr io.Writer) error {
	return named(c, "tokens revoke", "token ID", args, stderr, func(ctx context.Context, id string) error {
		t, err := c.tokens().RevokeToken(ctx, &accessv1.RevokeTokenRequest{TokenId: id})
		if err != nil {
			return err
		}
		return c.emit(t, tokenHeader, tokenRows(t))
	})
}

func (c *cli) access() accessv1.AccessServiceClient { return accessv1.NewAccessServiceClient(c.conn) }

func ruleString(r *accessv1.TopicRule) string {
	eff := strings.ToLower(strings.TrimPrefix(r.GetEffect().String(), "EFFECT_"))
	act := strings.ToLower(strings.TrimPrefix(r.GetAction().String(), "ACTION_"))
	return eff + ":" + act + ":" + r.GetFilter()
}

func roleRows(rs ...*accessv1.Role) [][]string {
	rows := make([][]string, 0, len(rs))
	for _, r := range rs {
		rules := make([]string, len(r.GetRules()))
		for i, x := range r.GetRules() {
			rules[i] = ruleString(x)
		}
		rows = append(rows, []string{r.GetName(), r.GetSource(), strings.Join(rules, " ")})
	}
	return rows
}

var roleHeader = []string{"NAME", "SOURCE", "RULES"}

// parseRule reads effect:action:filter, e.g. allow:subscribe:tele/+/#.
func parseRule(s string) (*accessv1.TopicRule, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) != 3 {
		return nil, usagef("--rule %q: want effect:action:filter, e.g. allow:subscribe:tele/+/#", s)
	}
	eff, ok := accessv1.Effect_value["EFFECT_"+strings.ToUpper(parts[0])]
	if !ok || eff == 0 {
		return nil, usagef("--rule %q: effect must be allow or deny", s)
	}
	act, ok := accessv1.Action_value["ACTION_"+strings.ToUpper(parts[1])]
	if !ok || act == 0 {
		return nil, usagef("--rule %q: action must be publish, subscribe or all", s)
	}
	return &accessv1.TopicRule{Effect: accessv1.Effect(eff), Action: accessv1.Action(act), Filter: parts[2]}, nil
}

func rolesPut(c *cli, args []string, stderr io.Writer) error {
	fs := verbFlags("roles put", stderr)
	var rules multi
	fs.Var(&rules, "rule", "effect:action:filter, e.g. allow:subscribe:tele/+/# (repeatable, in order)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	name, err := one(pos, "role name")
	if err != nil {
		return err
	}
	role := &accessv1.Role{Name: name}
	for _, r := range rules {
		tr, err := parseRule(r)
		if err != nil {
			return err
		}
		role.Rules = append(role.Rules, tr)
	}
	ctx, cancel := c.ctx()
	defer cancel()
	out, err := c.access().PutRole(ctx, &accessv1.PutRoleRequest{Role: role})
	if err != nil {
		return err
	}
	return c.emit(out, roleHeader, roleRows(out))
}

func rolesGet(c *cli, args []string, stderr io.Writer) error {
	return named(c, "roles get", "role name", args, stderr, func(ctx context.Context, name string) error {
		r, err := c.access().GetRole(ctx, &accessv1.GetRoleRequest{Name: name})
		if err != nil {
			return err
		}
		return c.emit(r, roleHeader, roleRows(r))
	})
}

func rolesList(c *cli, args []string, stderr io.Writer) error {
	if _, err := parse(verbFlags("roles list", stderr), args); err != nil {
		return err
	}
	ctx, cancel := c.ctx()
	defer cancel()
	resp, err := c.access().ListRoles(ctx, &accessv1.ListRolesRequest{})
	if err != nil {
		return err
	}
	return c.emit(resp, roleHeader, roleRows(resp.GetRoles()...))
}

func rolesDelete(c *cli, args []string, stderr io.Writer) error {
	return named(c, "roles delete", "role name", args, stderr, func(ctx context.Context, name string) error {
		resp, err := c.access().DeleteRole(ctx, &accessv1.DeleteRoleRequest{Name: name})
		if err != nil {
			return err
		}
		return c.emit(resp, []string{"DELETED"}, [][]string{{name}})
	})
}

func appRows(as ...*accessv1.Application) [][]string {
	rows := make([][]string, 0, len(as))
	for _, a := range as {
		rows = append(rows, []string{a.GetName(), a.GetRole(), strconv.FormatBool(a.GetEnabled()), "app:" + a.GetName(), ts(a.GetCreateTime())})
	}
	return rows
}

var appHeader = []string{"NAME", "ROLE", "ENABLED", "MQTT USERNAME", "CREATED"}

func appsCreate(c *cli, args []string, stderr io.Writer) error {
	fs := verbFlags("apps create", stderr)
	role := fs.String("role", "", "the role whose rules apply (required)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	name, err := one(pos, "application name")
	if err != nil {
		return err
	}
	if *role == "" {
		return usagef("--role is required")
	}
	ctx, cancel := c.ctx()
	defer cancel()
	resp, err := c.access().CreateApplication(ctx, &accessv1.CreateApplicationRequest{Application: &accessv1.Application{Name: name, Role: *role, Enabled: proto.Bool(true)}})
	if err != nil {
		return err
	}
	if err := c.emit(resp, appHeader, appRows(resp.GetApplication())); err != nil {
		return err
	}
	c.secretNote(resp.GetSecret())
	return nil
}

func appsGet(c *cli, args []string, stderr io.Writer) error {
	return named(c, "apps get", "application name", args, stderr, func(ctx context.Context, name string) error {
		a, err := c.access().GetApplication(ctx, &accessv1.GetApplicationRequest{Name: name})
		if err != nil {
			return err
		}
		return c.emit(a, appHeader, appRows(a))
	})
}

func appsList(c *cli, args []string, stderr io.Writer) error {
	if _, err := parse(verbFlags("apps list", stderr), args); err != nil {
		return err
	}
	ctx, cancel := c.ctx()
	defer cancel()
	resp, err := c.access().ListApplications(ctx, &accessv1.ListApplicationsRequest{})
	if err != nil {
		return err
	}
	return c.emit(resp, appHeader, appRows(resp.GetApplications()...))
}

func appsUpdate(c *cli, args []string, stderr io.Writer) error {
	fs := verbFlags("apps update", stderr)
	role := fs.String("role", "", "new role")
	enable := fs.Bool("enable", false, "enable")
	disable := fs.Bool("disable", false, "disable (disconnects it)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	name, err := one(pos, "application name")
	if err != nil {
		return err
	}
	if *enable && *disable {
		return usagef("--enable and --disable contradict each other")
	}
	a := &accessv1.Application{Name: name, Role: *role}
	if *enable || *disable {
		a.Enabled = proto.Bool(*enable)
	}
	if a.Role == "" && a.Enabled == nil {
		return usagef("nothing to update: pass --role, --enable or --disable")
	}
	ctx, cancel := c.ctx()
	defer cancel()
	out, err := c.access().UpdateApplication(ctx, &accessv1.UpdateApplicationRequest{Application: a})
	if err != nil {
		return err
	}
	return c.emit(out, appHeader, appRows(out))
}

func appsDelete(c *cli, args []string, stderr io.Writer) error {
	return named(c, "apps delete", "application name", args, stderr, func(ctx context.Context, name string) error {
		resp, err := c.access().DeleteApplication(ctx, &accessv1.DeleteApplicationRequest{Name: name})
		if err != nil {
			return err
		}
		return c.emit(resp, []string{"DELETED"}, [][]string{{name}})
	})
}

func appsRotate(c *cli, args []string, stderr io.Writer) error {
	pos, err := parse(verbFlags("apps rotate-secret", stderr), args)
	if err != nil {
		return err
	}
	name, err := one(pos, "application name")
	if err != nil {
		return err
	}
	ctx, cancel := c.ctx()
	defer cancel()
	resp, err := c.access().RotateApplicationSecret(ctx, &accessv1.RotateApplicationSecretRequest{Name: name})
	if err != nil {
		return err
	}
	if c.json {
		return c.emit(resp, nil, nil)
	}
	fmt.Fprintf(c.out, "application %s: new secret %s\n(shown once; the old secret no longer works)\n", name, resp.GetSecret())
	return nil
}
