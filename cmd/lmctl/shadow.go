package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	shadowv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/shadow/v1"
)

func init() {
	commands["shadow get"] = shadowGet
	commands["shadow update"] = shadowUpdate
	commands["shadow delete"] = shadowDelete
	commands["shadow list"] = shadowList
	commands["shadow query"] = shadowQuery
}

func (c *cli) shadows() shadowv1.ShadowServiceClient { return shadowv1.NewShadowServiceClient(c.conn) }

var shadowHeader = []string{"DEVICE", "SHADOW", "VERSION", "UPDATED", "DESIRED", "REPORTED", "DELTA"}

func compact(s *structpb.Struct) string {
	if s == nil || len(s.GetFields()) == 0 {
		return "-"
	}
	b, err := protojson.Marshal(s)
	if err != nil {
		return "?"
	}
	// protojson varies whitespace on purpose; re-encode for a stable line.
	var v any
	if json.Unmarshal(b, &v) != nil {
		return string(b)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

func shadowRows(ds ...*shadowv1.ShadowDocument) [][]string {
	rows := make([][]string, 0, len(ds))
	for _, d := range ds {
		rows = append(rows, []string{d.GetDeviceId(), orDash(d.GetShadowName()), strconv.FormatUint(d.GetVersion(), 10),
			ts(d.GetUpdateTime()), compact(d.GetDesired()), compact(d.GetReported()), compact(d.GetDelta())})
	}
	return rows
}

// versionFlag is an optional --version.
type versionFlag struct{ v *uint64 }

func (f *versionFlag) String() string {
	if f.v == nil {
		return ""
	}
	return strconv.FormatUint(*f.v, 10)
}

func (f *versionFlag) Set(s string) error {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("want a non-negative integer")
	}
	f.v = &v
	return nil
}

func shadowGet(c *cli, args []string, stderr io.Writer) error {
	fs := verbFlags("shadow get", stderr)
	name := fs.String("name", "", "named shadow (default: the classic shadow)")
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
	d, err := c.shadows().GetShadow(ctx, &shadowv1.GetShadowRequest{DeviceId: id, ShadowName: *name})
	if err != nil {
		return err
	}
	return c.emit(d, shadowHeader, shadowRows(d))
}

func shadowUpdate(c *cli, args []string, stderr io.Writer) error {
	fs := verbFlags("shadow update", stderr)
	name := fs.String("name", "", "named shadow (default: the classic shadow)")
	desired := fs.String("desired", "", `JSON object merged into desired state; null values delete keys, e.g. '{"interval":30,"old":null}'`)
	clear := fs.Bool("clear", false, "delete the whole desired state first")
	token := fs.String("client-token", "", "client token, echoed in the delta; with --version makes a retry safe")
	var version versionFlag
	fs.Var(&version, "version", "apply only if the shadow is at this version (0: only if it does not exist)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	id, err := one(pos, "device ID")
	if err != nil {
		return err
	}
	if *desired == "" && !*clear {
		return usagef("give --desired '{...}' or --clear")
	}
	req := &shadowv1.UpdateDesiredRequest{DeviceId: id, ShadowName: *name, ClearDesired: *clear, ExpectedVersion: version.v, ClientToken: *token}
	if *desired != "" {
		req.Desired = &structpb.Struct{}
		if err := protojson.Unmarshal([]byte(*desired), req.Desired); err != nil {
			return usagef("--desired must be a JSON object: %v", err)
		}
	}
	ctx, cancel := c.ctx()
	defer cancel()
	d, err := c.shadows().UpdateDesired(ctx, req)
	if err != nil {
		return err
	}
	return c.emit(d, shadowHeader, shadowRows(d))
}

func shadowDelete(c *cli, args []string, stderr io.Writer) error {
	fs := verbFlags("shadow delete", stderr)
	name := fs.String("name", "", "named shadow (default: the classic shadow)")
	var version versionFlag
	fs.Var(&version, "version", "delete only if the shadow is at this version")
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
	resp, err := c.shadows().DeleteShadow(ctx, &shadowv1.DeleteShadowRequest{DeviceId: id, ShadowName: *name, ExpectedVersion: version.v})
	if err != nil {
		return err
	}
	return c.emit(resp, []string{"DEVICE", "SHADOW", "DELETED AT VERSION"}, [][]string{{id, orDash(*name), strconv.FormatUint(resp.GetVersion(), 10)}})
}

func shadowList(c *cli, args []string, stderr io.Writer) error {
	pos, err := parse(verbFlags("shadow list", stderr), args)
	if err != nil {
		return err
	}
	id, err := one(pos, "device ID")
	if err != nil {
		return err
	}
	all := &shadowv1.ListNamedShadowsResponse{}
	req := &shadowv1.ListNamedShadowsRequest{DeviceId: id, PageSize: 1000}
	err = c.pages(func(ctx context.Context, token string) (string, bool, error) {
		req.PageToken = token
		resp, err := c.shadows().ListNamedShadows(ctx, req)
		all.Classic = all.Classic || resp.GetClassic()
		all.Names = append(all.Names, resp.GetNames()...)
		return resp.GetNextPageToken(), false, err
	})
	if err != nil {
		return err
	}
	var rows [][]string
	if all.GetClassic() {
		rows = append(rows, []string{id, "- (classic)"})
	}
	for _, n := range all.GetNames() {
		rows = append(rows, []string{id, n})
	}
	return c.emit(all, []string{"DEVICE", "SHADOW"}, rows)
}

func shadowQuery(c *cli, args []string, stderr io.Writer) error {
	fs := verbFlags("shadow query", stderr)
	filter := fs.String("filter", "", `filter, e.g. 'reported.firmware.version != "2.1.0" AND labels.region = "north"'`)
	name := fs.String("name", "", "the shadow the filter reads (default: the classic shadow)")
	limit := fs.Int("limit", 0, "stop after this many devices (default: all)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 1 && *filter == "" {
		*filter = pos[0] // lmctl shadow query 'reported.x = 1'
	} else if len(pos) != 0 {
		return usagef("unexpected arguments %q (quote the filter)", pos)
	}
	req := &shadowv1.QueryDevicesRequest{Filter: *filter, ShadowName: *name, PageSize: 500}
	all := &shadowv1.QueryDevicesResponse{}
	err = c.pages(func(ctx context.Context, token string) (string, bool, error) {
		req.PageToken = token
		resp, err := c.shadows().QueryDevices(ctx, req)
		all.Devices = append(all.Devices, resp.GetDevices()...)
		return resp.GetNextPageToken(), *limit > 0 && len(all.Devices) >= *limit, err
	})
	if err != nil {
		return err
	}
	if *limit > 0 && len(all.Devices) > *limit {
		all.Devices = all.Devices[:*limit]
	}
	rows := make([][]string, 0, len(all.Devices))
	for _, m := range all.Devices {
		v := "-"
		if m.GetShadow() != nil {
			v = strconv.FormatUint(m.GetShadow().GetVersion(), 10)
		}
		rows = append(rows, []string{m.GetDeviceId(), kv(m.GetLabels()), v, compact(m.GetShadow().GetReported()), compact(m.GetShadow().GetDelta())})
	}
	return c.emit(all, []string{"DEVICE", "LABELS", "VERSION", "REPORTED", "DELTA"}, rows)
}
