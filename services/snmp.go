package services

import (
	"context"
	"log/slog"
	"unicode/utf8"

	"github.com/gosnmp/gosnmp"

	snmpv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/snmp/v1"
	"github.com/lastmile-dm/lastmile/tunnel/snmprelay"
	"github.com/lastmile-dm/lastmile/tunnel/snmprelay/proxy"
)

// snmpServer implements SnmpService on the SNMP proxy.
type snmpServer struct {
	snmpv1.UnimplementedSnmpServiceServer
	proxy *proxy.Proxy
	log   *slog.Logger
}

// snmpTypes maps the API's types to ASN.1 tags, both ways.
var snmpTypes = map[snmpv1.Type]gosnmp.Asn1BER{
	snmpv1.Type_TYPE_INTEGER:           gosnmp.Integer,
	snmpv1.Type_TYPE_OCTET_STRING:      gosnmp.OctetString,
	snmpv1.Type_TYPE_OBJECT_IDENTIFIER: gosnmp.ObjectIdentifier,
	snmpv1.Type_TYPE_IP_ADDRESS:        gosnmp.IPAddress,
	snmpv1.Type_TYPE_COUNTER32:         gosnmp.Counter32,
	snmpv1.Type_TYPE_GAUGE32:           gosnmp.Gauge32,
	snmpv1.Type_TYPE_TIMETICKS:         gosnmp.TimeTicks,
	snmpv1.Type_TYPE_COUNTER64:         gosnmp.Counter64,
	snmpv1.Type_TYPE_OPAQUE:            gosnmp.Opaque,
	snmpv1.Type_TYPE_NULL:              gosnmp.Null,
	snmpv1.Type_TYPE_NO_SUCH_OBJECT:    gosnmp.NoSuchObject,
	snmpv1.Type_TYPE_NO_SUCH_INSTANCE:  gosnmp.NoSuchInstance,
	snmpv1.Type_TYPE_END_OF_MIB_VIEW:   gosnmp.EndOfMibView,
}

var snmpTypeOf = func() map[gosnmp.Asn1BER]snmpv1.Type {
	m := map[gosnmp.Asn1BER]snmpv1.Type{}
	for k, v := range snmpTypes {
		m[v] = k
	}
	return m
}()

func varbindToProto(v snmprelay.Var) *snmpv1.Varbind {
	out := &snmpv1.Varbind{Oid: v.OID, Type: snmpTypeOf[gosnmp.Asn1BER(v.Type)]}
	switch gosnmp.Asn1BER(v.Type) {
	case gosnmp.Integer:
		out.Value = &snmpv1.Varbind_Int{Int: v.Int}
	case gosnmp.Counter32, gosnmp.Gauge32, gosnmp.TimeTicks, gosnmp.Counter64, gosnmp.Uinteger32:
		out.Value = &snmpv1.Varbind_Uint{Uint: v.Uint}
	case gosnmp.OctetString, gosnmp.Opaque, gosnmp.BitString:
		out.Value = &snmpv1.Varbind_Bytes{Bytes: v.Bytes}
		if gosnmp.Asn1BER(v.Type) == gosnmp.OctetString && utf8.Valid(v.Bytes) {
			out.Text = string(v.Bytes)
		}
	case gosnmp.ObjectIdentifier, gosnmp.IPAddress:
		out.Value = &snmpv1.Varbind_Str{Str: v.Str}
	}
	return out
}

// varbindFromProto reads a varbind to set.
func varbindFromProto(i int, v *snmpv1.Varbind) (snmprelay.Var, error) {
	t, ok := snmpTypes[v.GetType()]
	switch {
	case !snmprelay.ValidOID(v.GetOid()):
		return snmprelay.Var{}, invalidf("varbinds[%d].oid %q is not a numeric OID", i, v.GetOid())
	case !ok || t == gosnmp.NoSuchObject || t == gosnmp.NoSuchInstance || t == gosnmp.EndOfMibView:
		return snmprelay.Var{}, invalidf("varbinds[%d].type %s cannot be set", i, v.GetType())
	}
	out := snmprelay.Var{OID: v.GetOid(), Type: byte(t)}
	switch t {
	case gosnmp.Integer:
		out.Int = v.GetInt()
	case gosnmp.Counter32, gosnmp.Gauge32, gosnmp.TimeTicks, gosnmp.Counter64:
		out.Uint = v.GetUint()
	case gosnmp.OctetString, gosnmp.Opaque:
		out.Bytes = v.GetBytes()
	case gosnmp.ObjectIdentifier, gosnmp.IPAddress:
		out.Str = v.GetStr()
	}
	return out, nil
}

func errorName(status int) string {
	if status == 0 {
		return ""
	}
	return gosnmp.SNMPError(status).String() //nolint:gosec // 0-255
}

func (s *snmpServer) Get(ctx context.Context, req *snmpv1.GetRequest) (*snmpv1.GetResponse, error) {
	r, err := s.proxy.Get(ctx, req.GetDeviceId(), req.GetOids())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	out := &snmpv1.GetResponse{ErrorStatus: int32(r.ErrorStatus), ErrorIndex: int32(r.ErrorIndex), Error: errorName(r.ErrorStatus)} //nolint:gosec // 0-255
	for _, v := range r.Vars {
		out.Varbinds = append(out.Varbinds, varbindToProto(v))
	}
	return out, nil
}

func (s *snmpServer) Walk(req *snmpv1.WalkRequest, stream snmpv1.SnmpService_WalkServer) error {
	ctx := stream.Context()
	err := s.proxy.Walk(ctx, req.GetDeviceId(), req.GetOid(), func(v snmprelay.Var) error {
		return stream.Send(&snmpv1.WalkResponse{Varbind: varbindToProto(v)})
	})
	return toStatus(ctx, s.log, err)
}

func (s *snmpServer) Set(ctx context.Context, req *snmpv1.SetRequest) (*snmpv1.SetResponse, error) {
	if len(req.GetVarbinds()) == 0 {
		return nil, invalid("varbinds: at least one is required")
	}
	vars := make([]snmprelay.Var, 0, len(req.GetVarbinds()))
	for i, v := range req.GetVarbinds() {
		sv, err := varbindFromProto(i, v)
		if err != nil {
			return nil, err
		}
		vars = append(vars, sv)
	}
	r, err := s.proxy.Set(ctx, req.GetDeviceId(), vars)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	out := &snmpv1.SetResponse{ErrorStatus: int32(r.ErrorStatus), ErrorIndex: int32(r.ErrorIndex), Error: errorName(r.ErrorStatus)} //nolint:gosec // 0-255
	for _, v := range r.Vars {
		out.Varbinds = append(out.Varbinds, varbindToProto(v))
	}
	return out, nil
}
