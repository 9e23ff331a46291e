// SPDX-License-Identifier: MIT

package packets

// lastmile fork: the fork's codec must stay byte-for-byte what upstream
// mochi puts on the wire. This test decodes and re-encodes the packet
// fixtures with both and compares.

import (
	"bytes"
	"testing"

	upstream "github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"
)

func splitRaw(t *testing.T, raw []byte) (byte, []byte) {
	t.Helper()
	_, n, err := DecodeLength(bytes.NewReader(raw[1:]))
	require.NoError(t, err)
	return raw[0], raw[1+n:]
}

func TestWireFormatMatchesUpstream(t *testing.T) {
	compared := 0
	for _, typ := range []byte{Publish, Puback, Pubrec, Pubrel, Pubcomp, Suback, Unsuback, Connack} {
		for _, c := range TPacketData[typ] {
			if c.FailFirst != nil || c.Expect != nil || c.Packet == nil || len(c.RawBytes) < 2 || c.Group == "decode" {
				continue
			}
			first, body := splitRaw(t, c.RawBytes)
			version := c.Packet.ProtocolVersion

			fork := Packet{ProtocolVersion: version}
			up := upstream.Packet{ProtocolVersion: version}
			ferr, uerr := fork.FixedHeader.Decode(first), up.FixedHeader.Decode(first)
			require.Equal(t, uerr == nil, ferr == nil, "%s: header: fork %v, upstream %v", c.Desc, ferr, uerr)
			if ferr != nil {
				continue
			}
			fork.FixedHeader.Remaining = len(body)
			up.FixedHeader.Remaining = len(body)

			var fb, ub bytes.Buffer
			switch typ {
			case Publish:
				ferr, uerr = fork.PublishDecode(append([]byte{}, body...)), up.PublishDecode(append([]byte{}, body...))
				if ferr == nil && uerr == nil {
					ferr, uerr = fork.PublishEncode(&fb), up.PublishEncode(&ub)
				}
			case Puback:
				ferr, uerr = fork.PubackDecode(body), up.PubackDecode(body)
				if ferr == nil && uerr == nil {
					ferr, uerr = fork.PubackEncode(&fb), up.PubackEncode(&ub)
				}
			case Pubrec:
				ferr, uerr = fork.PubrecDecode(body), up.PubrecDecode(body)
				if ferr == nil && uerr == nil {
					ferr, uerr = fork.PubrecEncode(&fb), up.PubrecEncode(&ub)
				}
			case Pubrel:
				ferr, uerr = fork.PubrelDecode(body), up.PubrelDecode(body)
				if ferr == nil && uerr == nil {
					ferr, uerr = fork.PubrelEncode(&fb), up.PubrelEncode(&ub)
				}
			case Pubcomp:
				ferr, uerr = fork.PubcompDecode(body), up.PubcompDecode(body)
				if ferr == nil && uerr == nil {
					ferr, uerr = fork.PubcompEncode(&fb), up.PubcompEncode(&ub)
				}
			case Suback:
				ferr, uerr = fork.SubackDecode(body), up.SubackDecode(body)
				if ferr == nil && uerr == nil {
					ferr, uerr = fork.SubackEncode(&fb), up.SubackEncode(&ub)
				}
			case Unsuback:
				ferr, uerr = fork.UnsubackDecode(body), up.UnsubackDecode(body)
				if ferr == nil && uerr == nil {
					ferr, uerr = fork.UnsubackEncode(&fb), up.UnsubackEncode(&ub)
				}
			case Connack:
				ferr, uerr = fork.ConnackDecode(body), up.ConnackDecode(body)
				if ferr == nil && uerr == nil {
					ferr, uerr = fork.ConnackEncode(&fb), up.ConnackEncode(&ub)
				}
			}
			require.Equal(t, uerr == nil, ferr == nil, "%s: fork %v, upstream %v", c.Desc, ferr, uerr)
			require.Equal(t, ub.Bytes(), fb.Bytes(), "%s: encoded differently", c.Desc)
			if ferr == nil {
				compared++
			}
		}
	}
	require.Greater(t, compared, 20, "the fixtures were compared")
}
