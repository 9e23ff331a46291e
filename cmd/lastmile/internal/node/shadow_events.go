package node

import (
	"encoding/json"

	"github.com/lastmile-dm/lastmile/dm/event"
	"github.com/lastmile-dm/lastmile/dm/shadow"
)

// shadowEvents puts every accepted shadow change on the event stream: the
// new document, and the delta when desired and reported differ.
type shadowEvents struct{ bus *event.Bus }

var _ shadow.Notifier = shadowEvents{}

// ShadowChanged runs on the shadow writer's goroutine; Bus.Publish never
// blocks. The document's encoding cannot fail (it was just stored), but a
// failure would only cost the event, never the update. With no watcher,
// nothing is encoded.
func (s shadowEvents) ShadowChanged(c shadow.Change) {
	if !s.bus.Wants(event.TypeShadowUpdated) {
		return
	}
	doc, err := c.Document.Encode()
	if err != nil {
		return
	}
	ev := event.ShadowUpdated(c.DeviceID, c.Name, c.Document.Version, doc)
	ev.Shadow.Deleted = c.Deleted
	s.bus.Publish(ev)
	if c.Delta != nil {
		if delta, err := json.Marshal(c.Delta); err == nil {
			s.bus.Publish(event.ShadowDelta(c.DeviceID, c.Name, c.Document.Version, delta))
		}
	}
}
