package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	configv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/config/v1"
)

func init() {
	commands["config create"] = configCreate
	commands["config versions"] = configVersions
	commands["config assign"] = configAssign
	commands["config status"] = configStatus
}

func (c *cli) configs() configv1.ConfigServiceClient { return configv1.NewConfigServiceClient(c.conn) }

// schemaFlag collects --require path:type.
type schemaFlag map[string]string

func (f schemaFlag) String() string { return "" }

func (f schemaFlag) Set(s string) error {
	k, t, ok := strings.Cut(s, ":")
	if !ok || k == "" || t == "" {
		return fmt.Errorf("want key.path:type, e.g. server.port:integer")
	}
	f[k] = t
	return nil
}

// configCreate creates a profile (with --format) if it does not exist,
// then a version from --file when given:
//
//	lmctl config create wan --format yaml --require wan.mtu:integer
//	lmctl config create wan --file wan.yaml --comment "MTU 1492"
func configCreate(c *cli, args []string, stderr io.Writer) error {
	fs := verbFlags("config create", stderr)
	format := fs.String("format", "", "json, yaml or text: creates the profile")
	desc := fs.String("description", "", "profile description")
	schema := schemaFlag{}
	fs.Var(schema, "require", "required key and type of every version, key.path:type (repeatable; types string, number, integer, boolean, object, array, any)")
	file := fs.String("file", "", "document to add as the next version ('-' for stdin)")
	comment := fs.String("comment", "", "comment of the version")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	name, err := one(pos, "profile name")
	if err != nil {
		return err
	}
	if *format == "" && *file == "" {
		return usagef("give --format to create the profile, --file to add a version, or both")
	}
	ctx, cancel := c.ctx()
	defer cancel()
	if *format != "" {
		p, err := c.configs().CreateProfile(ctx, &configv1.CreateProfileRequest{Profile: &configv1.Profile{
			Name: name, Format: *format, Description: *desc, Schema: schema}})
		if err != nil {
			return err
		}
		if *file == "" {
			return c.emit(p, []string{"PROFILE", "FORMAT", "SCHEMA", "CREATED"},
				[][]string{{p.GetName(), p.GetFormat(), schemaString(p.GetSchema()), ts(p.GetCreateTime())}})
		}
	}
	var content []byte
	if *file == "-" {
		content, err = io.ReadAll(os.Stdin)
	} else {
		content, err = os.ReadFile(*file)
	}
	if err != nil {
		return usagef("--file: %v", err)
	}
	res, err := c.configs().CreateVersion(ctx, &configv1.CreateVersionRequest{Profile: name, Content: string(content), Comment: *comment})
	if err != nil {
		return err
	}
	v := res.GetVersion()
	return c.emit(res, []string{"PROFILE", "VERSION", "HASH", "CREATED", "NEW"},
		[][]string{{v.GetProfile(), strconv.FormatInt(v.GetVersion(), 10), short(v.GetHash()), ts(v.GetCreateTime()), yesNo(res.GetCreated())}})
}

func schemaString(s map[string]string) string {
	if len(s) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k+":"+s[k])
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

// short abbreviates a hash for a table.
func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func configVersions(c *cli, args []string, stderr io.Writer) error {
	fs := verbFlags("config versions", stderr)
	show := fs.Int64("show", 0, "print the content of this version")
	size := fs.Int("page-size", 0, "versions per page")
	page := fs.String("page-token", "", "continue from a previous page")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	name, err := one(pos, "profile name")
	if err != nil {
		return err
	}
	ctx, cancel := c.ctx()
	defer cancel()
	res, err := c.configs().ListVersions(ctx, &configv1.ListVersionsRequest{Profile: name, WithContent: *show > 0 || c.json,
		PageSize: int32(*size), PageToken: *page}) //nolint:gosec // the server bounds it
	if err != nil {
		return err
	}
	if *show > 0 && !c.json {
		for _, v := range res.GetVersions() {
			if v.GetVersion() == *show {
				_, err := io.WriteString(c.out, v.GetContent())
				return err
			}
		}
		return fmt.Errorf("%s has no version %d on this page", name, *show)
	}
	rows := make([][]string, 0, len(res.GetVersions()))
	for _, v := range res.GetVersions() {
		rows = append(rows, []string{strconv.FormatInt(v.GetVersion(), 10), short(v.GetHash()), ts(v.GetCreateTime()), orDash(v.GetComment())})
	}
	if err := c.emit(res, []string{"VERSION", "HASH", "CREATED", "COMMENT"}, rows); err != nil {
		return err
	}
	if res.GetNextPageToken() != "" && !c.json {
		fmt.Fprintf(stderr, "more: --page-token %s\n", res.GetNextPageToken())
	}
	return nil
}

// configAssign starts a rollout: lmctl config assign wan 3 --device gw-1
// (or --group, or --query).
func configAssign(c *cli, args []string, stderr io.Writer) error {
	fs := verbFlags("config assign", stderr)
	dev := fs.String("device", "", "one device")
	group := fs.String("group", "", "every device of a registry group")
	query := fs.String("query", "", `every device matching a fleet query, e.g. 'labels.site = "lab"'`)
	rate := fs.Int("rate", 0, "devices released per second (default 10)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("want PROFILE VERSION, got %d arguments", len(pos))
	}
	version, err := strconv.ParseInt(pos[1], 10, 64)
	if err != nil || version < 1 {
		return usagef("VERSION %q is not a positive integer", pos[1])
	}
	ctx, cancel := c.ctx()
	defer cancel()
	r, err := c.configs().Assign(ctx, &configv1.AssignRequest{Profile: pos[0], Version: version,
		Target: &configv1.Target{DeviceId: *dev, Group: *group, Query: *query}, Rate: int32(*rate)}) //nolint:gosec // the server bounds it
	if err != nil {
		return err
	}
	return c.emit(r, rolloutHeader, [][]string{rolloutRow(r)})
}

var rolloutHeader = []string{"ROLLOUT", "PROFILE", "VERSION", "TARGET", "DEVICES", "RATE", "STATE", "CREATED"}

func rolloutRow(r *configv1.Rollout) []string {
	t := r.GetTarget()
	target := "device " + t.GetDeviceId()
	switch {
	case t.GetGroup() != "":
		target = "group " + t.GetGroup()
	case t.GetQuery() != "":
		target = "query " + t.GetQuery()
	}
	return []string{r.GetId(), r.GetProfile(), strconv.FormatInt(r.GetVersion(), 10), target,
		strconv.Itoa(int(r.GetDevices())), strconv.Itoa(int(r.GetRate())), r.GetState(), ts(r.GetCreateTime())}
}

// configStatus shows a rollout's totals and devices, or lists rollouts
// without an argument.
func configStatus(c *cli, args []string, stderr io.Writer) error {
	fs := verbFlags("config status", stderr)
	size := fs.Int("page-size", 0, "devices (or rollouts) per page")
	page := fs.String("page-token", "", "continue from a previous page")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	ctx, cancel := c.ctx()
	defer cancel()
	if len(pos) == 0 {
		res, err := c.configs().ListRollouts(ctx, &configv1.ListRolloutsRequest{PageSize: int32(*size), PageToken: *page}) //nolint:gosec // the server bounds it
		if err != nil {
			return err
		}
		rows := make([][]string, 0, len(res.GetRollouts()))
		for _, r := range res.GetRollouts() {
			rows = append(rows, rolloutRow(r))
		}
		return c.emit(res, rolloutHeader, rows)
	}
	id, err := one(pos, "rollout ID")
	if err != nil {
		return err
	}
	st, err := c.configs().GetRolloutStatus(ctx, &configv1.GetRolloutStatusRequest{RolloutId: id, PageSize: int32(*size), PageToken: *page}) //nolint:gosec // the server bounds it
	if err != nil {
		return err
	}
	if c.json {
		return c.emit(st, nil, nil)
	}
	r := st.GetRollout()
	var totals []string
	for _, s := range []string{"pending", "delivered", "applied", "failed", "rolled_back", "superseded"} {
		totals = append(totals, fmt.Sprintf("%s=%d", s, st.GetTotals()[s]))
	}
	fmt.Fprintf(c.out, "rollout %s: %s v%d to %s, %d devices, %s\ntotals: %s\n\n", r.GetId(), r.GetProfile(), r.GetVersion(),
		rolloutRow(r)[3], r.GetDevices(), r.GetState(), strings.Join(totals, " "))
	rows := make([][]string, 0, len(st.GetDevices()))
	for _, d := range st.GetDevices() {
		rows = append(rows, []string{d.GetDeviceId(), d.GetState(), ts(d.GetUpdateTime()), orDash(d.GetReason())})
	}
	if err := c.emit(st, []string{"DEVICE", "STATE", "UPDATED", "REASON"}, rows); err != nil {
		return err
	}
	if st.GetNextPageToken() != "" {
		fmt.Fprintf(stderr, "more: --page-token %s\n", st.GetNextPageToken())
	}
	return nil
}
