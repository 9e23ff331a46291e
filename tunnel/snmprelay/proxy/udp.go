package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/lastmile-dm/lastmile/dm/topic"
	"github.com/lastmile-dm/lastmile/tunnel/snmprelay"
)

// Listen serves SNMP on a UDP address ("127.0.0.1:1161") until Close and
// returns the bound address.
func (p *Proxy) Listen(addr string) (net.Addr, error) {
	if p.cfg.ReadCommunity == "" && p.cfg.WriteCommunity == "" {
		return nil, errors.New("snmp proxy: a read or write community is required for the UDP listener")
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("snmp proxy: listen on %s: %w", addr, err)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = pc.Close()
		return nil, ErrClosed
	}
	p.conns = append(p.conns, pc)
	p.mu.Unlock()
	p.wg.Add(1)
	go p.serve(pc)
	p.log.Info("SNMP proxy listening", "addr", pc.LocalAddr().String())
	return pc.LocalAddr(), nil
}

func (p *Proxy) serve(pc net.PacketConn) {
	defer p.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			select {
			case <-p.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		select {
		case p.inflght <- struct{}{}:
		default:
			p.m.requests.WithLabelValues("overloaded").Inc()
			continue
		}
		msg := append([]byte(nil), buf[:n]...)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer func() { <-p.inflght }()
			out, result := p.handle(msg, from.String())
			p.m.requests.WithLabelValues(result).Inc()
			if out != nil {
				_, _ = pc.WriteTo(out, from)
			}
		}()
	}
}

// Request is an SNMP request the UDP listener read, before relaying.
type Request struct {
	Packet   *gosnmp.SnmpPacket
	DeviceID string
	Op       snmprelay.Op
}

// Decode parses one datagram and checks what the proxy serves: v1 or v2c,
// GET, GETNEXT, GETBULK (v2c) or SET, a community "name@deviceId". The
// result names the reason a datagram is dropped.
func Decode(msg []byte) (req Request, result string, err error) {
	defer func() {
		if r := recover(); r != nil { // gosnmp must not take the listener down
			req, result, err = Request{}, "malformed", fmt.Errorf("decode: %v", r)
		}
	}()
	dec := &gosnmp.GoSNMP{Version: gosnmp.Version2c, Logger: gosnmp.NewLogger(nil)}
	pkt, err := dec.SnmpDecodePacket(msg)
	if err != nil {
		return Request{}, "malformed", err
	}
	switch pkt.Version {
	case gosnmp.Version1, gosnmp.Version2c:
	default:
		return Request{}, "unsupported_version", fmt.Errorf("SNMP %s is not served (v1 and v2c only)", pkt.Version)
	}
	switch pkt.PDUType {
	case gosnmp.GetRequest:
		req.Op = snmprelay.OpGet
	case gosnmp.GetNextRequest:
		req.Op = snmprelay.OpGetNext
	case gosnmp.SetRequest:
		req.Op = snmprelay.OpSet
	case gosnmp.GetBulkRequest:
		if pkt.Version == gosnmp.Version1 {
			return Request{}, "malformed", errors.New("GETBULK in SNMPv1")
		}
		req.Op = snmprelay.OpGetBulk
	default:
		return Request{}, "unsupported_pdu", fmt.Errorf("PDU %s is not served", pkt.PDUType)
	}
	at := strings.LastIndexByte(pkt.Community, '@')
	if at < 0 || !topic.ValidDeviceID(pkt.Community[at+1:]) {
		return Request{}, "no_device", errors.New("community is not name@deviceId")
	}
	if len(pkt.Community) > 127 || len(pkt.Variables) == 0 || len(pkt.Variables) > snmprelay.MaxVars {
		return Request{}, "malformed", errors.New("community or varbind count out of range")
	}
	req.Packet, req.DeviceID = pkt, pkt.Community[at+1:]
	return req, "", nil
}

// handle answers one datagram: the response to send (nil for none) and
// the result to count.
func (p *Proxy) handle(msg []byte, from string) ([]byte, string) {
	req, result, err := Decode(msg)
	if err != nil {
		p.log.Debug("SNMP request dropped", "result", result, "err", err)
		return nil, result
	}
	pkt := req.Packet
	// An OSS retransmits with the same request ID when an answer is slow:
	// the answer to the first copy answers it, so it is not relayed again.
	key := from + "/" + pkt.Community + "/" + strconv.FormatUint(uint64(pkt.RequestID), 10)
	p.mu.Lock()
	dup := p.relayed[key]
	p.relayed[key] = true
	p.mu.Unlock()
	if dup {
		return nil, "duplicate"
	}
	defer func() {
		p.mu.Lock()
		delete(p.relayed, key)
		p.mu.Unlock()
	}()
	name := pkt.Community[:strings.LastIndexByte(pkt.Community, '@')]
	write := communityOK(name, p.cfg.WriteCommunity)
	if !write && (req.Op == snmprelay.OpSet || !communityOK(name, p.cfg.ReadCommunity)) {
		return nil, "bad_community" // as an agent does: no answer to a wrong community
	}
	vars, err := snmprelay.FromPDUs(pkt.Variables)
	if err != nil {
		return nil, "malformed"
	}
	r := snmprelay.Request{Op: req.Op, Vars: vars, NonRepeaters: int(pkt.NonRepeaters), MaxRepetitions: int(pkt.MaxRepetitions)}
	start := time.Now()
	resp, err := p.Do(context.Background(), req.DeviceID, r)
	switch {
	case errors.Is(err, ErrDeviceOffline):
		return nil, "offline"
	case errors.Is(err, ErrTargetUnreachable):
		return nil, "target_timeout"
	case errors.Is(err, ErrInvalid):
		return nil, "malformed"
	case err != nil:
		return nil, "no_answer"
	}
	p.m.duration.Observe(time.Since(start).Seconds())
	out, err := encodeResponse(pkt, resp)
	if err != nil {
		p.log.Warn("SNMP response not encodable", "device", req.DeviceID, "err", err)
		return nil, "bad_answer"
	}
	return out, "answered"
}

// encodeResponse builds the GetResponse for req: the target's answer, in
// SNMPv1 terms for a v1 request (RFC 3584 §4.4), tooBig when it does not
// fit a datagram.
func encodeResponse(req *gosnmp.SnmpPacket, r snmprelay.Response) ([]byte, error) {
	out := &gosnmp.SnmpPacket{Version: req.Version, Community: req.Community, PDUType: gosnmp.GetResponse,
		RequestID: req.RequestID, Error: gosnmp.SNMPError(r.ErrorStatus), ErrorIndex: uint8(r.ErrorIndex), //nolint:gosec // checked by DecodeResponse
		Variables: snmprelay.PDUs(r.Vars), Logger: gosnmp.NewLogger(nil)}
	if req.Version == gosnmp.Version1 {
		toV1(out, req)
	}
	b, err := marshal(out)
	if err != nil {
		return nil, err
	}
	if len(b) > maxDatagram {
		out.Error, out.ErrorIndex, out.Variables = gosnmp.TooBig, 0, nil
		if req.Version == gosnmp.Version1 {
			out.Variables = req.Variables
		}
		return marshal(out)
	}
	return b, nil
}

// marshal encodes p; gosnmp panics on some values it cannot encode (an
// IpAddress that is not four bytes), which must not take the listener
// down.
func marshal(p *gosnmp.SnmpPacket) (b []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			b, err = nil, fmt.Errorf("encode response: %v", r)
		}
	}()
	return p.MarshalMsg()
}

// toV1 maps an SNMPv2 answer to SNMPv1: exceptions and Counter64 become
// noSuchName, v2 error statuses their v1 equivalents, and an error answer
// carries the request's varbinds.
func toV1(out, req *gosnmp.SnmpPacket) {
	switch out.Error {
	case gosnmp.NoError, gosnmp.TooBig, gosnmp.NoSuchName, gosnmp.BadValue, gosnmp.ReadOnly, gosnmp.GenErr:
	case gosnmp.WrongValue, gosnmp.WrongEncoding, gosnmp.WrongType, gosnmp.WrongLength, gosnmp.InconsistentValue:
		out.Error = gosnmp.BadValue
	case gosnmp.NoAccess, gosnmp.NotWritable, gosnmp.NoCreation, gosnmp.InconsistentName, gosnmp.AuthorizationError:
		out.Error = gosnmp.NoSuchName
	default:
		out.Error = gosnmp.GenErr
	}
	if out.Error == gosnmp.NoError {
		for i, v := range out.Variables {
			switch v.Type {
			case gosnmp.NoSuchObject, gosnmp.NoSuchInstance, gosnmp.EndOfMibView, gosnmp.Counter64:
				out.Error, out.ErrorIndex = gosnmp.NoSuchName, uint8(min(i+1, 255)) //nolint:gosec // bounded
			}
			if out.Error != gosnmp.NoError {
				break
			}
		}
	}
	if out.Error != gosnmp.NoError {
		out.Variables = req.Variables
	}
}
