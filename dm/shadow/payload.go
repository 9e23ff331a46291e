package shadow

import (
	"slices"
	"strconv"
	"time"
)

// The payloads the platform publishes on the response topics. They follow
// AWS IoT's layout field for field, so existing device code parses them.

type docView struct {
	State    State  `json:"state"`
	Metadata State  `json:"metadata"`
	Version  uint64 `json:"version"`
}

type getView struct {
	State struct {
		Desired  Object `json:"desired,omitempty"`
		Reported Object `json:"reported,omitempty"`
		Delta    Object `json:"delta,omitempty"`
	} `json:"state"`
	Metadata    State  `json:"metadata"`
	Version     uint64 `json:"version"`
	Timestamp   int64  `json:"timestamp"`
	ClientToken string `json:"clientToken,omitempty"`
}

func mustJSON(v any) []byte {
	return mustAppendJSON(make([]byte, 0, 256), v)
}

// GetAccepted is the get/accepted payload: the whole document with its
// delta.
func GetAccepted(d *Document, clientToken string) []byte {
	var v getView
	v.State.Desired, v.State.Reported = d.State.Desired, d.State.Reported
	v.State.Delta, _ = d.Delta()
	v.Metadata, v.Version, v.Timestamp, v.ClientToken = d.Metadata, d.Version, d.Timestamp, clientToken
	return mustJSON(v)
}

// UpdateAccepted is the update/accepted payload: the state the request
// sent (null for a cleared half), the metadata of what it wrote, and the
// new version. It is written directly, in json.Marshal's key order, rather
// than built as maps and encoded: it goes out on every update.
func UpdateAccepted(u *Update, r *Result) []byte {
	cur := r.Current
	b := make([]byte, 0, 2*len(u.ClientToken)+256)
	b = append(b, '{')
	if u.ClientToken != "" {
		b = append(b, `"clientToken":`...)
		b = appendJSONString(b, u.ClientToken)
		b = append(b, ',')
	}
	b = append(b, `"metadata":{`...)
	if u.Desired != nil {
		b = append(b, `"desired":`...)
		b = appendMetaFor(b, u.Desired, cur.Metadata.Desired)
	}
	if u.Reported != nil {
		if u.Desired != nil {
			b = append(b, ',')
		}
		b = append(b, `"reported":`...)
		b = appendMetaFor(b, u.Reported, cur.Metadata.Reported)
	}
	b = append(b, `},"state":{`...)
	if u.Desired != nil || u.ClearDesired {
		b = append(b, `"desired":`...)
		b = mustAppendJSON(b, u.Desired)
	}
	if u.Reported != nil || u.ClearReported {
		if u.Desired != nil || u.ClearDesired {
			b = append(b, ',')
		}
		b = append(b, `"reported":`...)
		b = mustAppendJSON(b, u.Reported)
	}
	b = append(b, `},"timestamp":`...)
	b = strconv.AppendInt(b, cur.Timestamp, 10)
	b = append(b, `,"version":`...)
	b = strconv.AppendUint(b, cur.Version, 10)
	return append(b, '}')
}

// appendMetaFor appends the JSON of metaFor(state, meta) without building
// it.
func appendMetaFor(b []byte, state, meta Object) []byte {
	var small [8]string
	keys := small[:0]
	for k := range state {
		if _, ok := meta[k]; ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		m := meta[k]
		if sv, ok := state[k].(Object); ok {
			if mo, ok := m.(Object); ok {
				b = appendMetaFor(b, sv, mo)
				continue
			}
		}
		b = mustAppendJSON(b, m)
	}
	return append(b, '}')
}

func mustAppendJSON(b []byte, v any) []byte {
	b, err := appendJSON(b, v)
	if err != nil {
		// Every value here was decoded from JSON or built from plain types.
		panic("shadow: encode payload: " + err.Error())
	}
	return b
}

// UpdateDocuments is the update/documents payload: the document before
// (null when the update created it) and after.
func UpdateDocuments(r *Result, clientToken string) []byte {
	if r.currentRaw != nil && (r.Previous == nil || r.previousRaw != nil) {
		// Splice the stored encodings (they carry state, metadata and
		// version, plus that version's timestamp and clientToken).
		prev := r.previousRaw
		if r.Previous == nil {
			prev = []byte("null")
		}
		b := make([]byte, 0, len(prev)+len(r.currentRaw)+64+len(clientToken))
		b = append(b, `{"previous":`...)
		b = append(b, prev...)
		b = append(b, `,"current":`...)
		b = append(b, r.currentRaw...)
		b = append(b, `,"timestamp":`...)
		b = strconv.AppendInt(b, r.Current.Timestamp, 10)
		if clientToken != "" {
			b = append(b, `,"clientToken":`...)
			b = append(b, mustJSON(clientToken)...)
		}
		return append(b, '}')
	}
	var prev any
	if r.Previous != nil {
		prev = docView{r.Previous.State, r.Previous.Metadata, r.Previous.Version}
	}
	return mustJSON(withToken(map[string]any{
		"previous":  prev,
		"current":   docView{r.Current.State, r.Current.Metadata, r.Current.Version},
		"timestamp": r.Current.Timestamp}, clientToken))
}

// DeltaPayload is the update/delta payload, or nil when d has no delta.
func DeltaPayload(d *Document, clientToken string) []byte {
	delta, meta := d.Delta()
	if delta == nil {
		return nil
	}
	return mustJSON(withToken(map[string]any{
		"state": delta, "metadata": meta, "version": d.Version, "timestamp": d.Timestamp}, clientToken))
}

// DeleteAccepted is the delete/accepted payload.
func DeleteAccepted(d *Document, now time.Time, clientToken string) []byte {
	return mustJSON(withToken(map[string]any{"version": d.Version, "timestamp": now.Unix()}, clientToken))
}

// Rejected is the .../rejected payload for err.
func Rejected(err error, now time.Time, clientToken string) []byte {
	code, msg := Code(err)
	return mustJSON(withToken(map[string]any{"code": code, "message": msg, "timestamp": now.Unix()}, clientToken))
}

// withToken adds the clientToken to m unless it is empty.
func withToken(m map[string]any, tok string) map[string]any {
	if tok != "" {
		m["clientToken"] = tok
	}
	return m
}
