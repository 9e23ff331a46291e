// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: 2023 mochi-mqtt, mochi-co
// SPDX-FileContributor: mochi-co

package mqtt

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/lastmile-dm/lastmile/third_party/mochi/packets"
)

// Inflight is a map of InflightMessage keyed on packet id.
type Inflight struct {
	sync.RWMutex
	internal            map[uint16]*inflightEntry // internal contains the inflight packets
	seq                 uint64                    // fork: the last order given
	receiveQuota        int32                     // remaining inbound qos quota for flow control
	sendQuota           int32                     // remaining outbound qos quota for flow control
	maximumReceiveQuota int32                     // maximum allowed receive quota
	maximumSendQuota    int32                     // maximum allowed send quota
}

// inflightEntry is an inflight packet and when it was first set (seq), for
// GetAll's order. fork: entries are pooled (inflightEntries). A map value
// as large as a Packet is stored out of line anyway, so the map allocated
// one per Set, for every QoS 1 delivery; no entry is reachable from
// outside the Inflight (Get and GetAll return copies).
type inflightEntry struct {
	pk  packets.Packet
	seq uint64
}

var inflightEntries = sync.Pool{New: func() any { return new(inflightEntry) }}

// release returns an entry that has left the map to the pool.
func (e *inflightEntry) release() {
	*e = inflightEntry{} // keep nothing the packet referred to
	inflightEntries.Put(e)
}

// NewInflights returns a new instance of an Inflight packets map.
func NewInflights() *Inflight {
	return &Inflight{} // fork: the map is made on first Set (idle clients have none)
}

// Set adds or updates an inflight packet by packet id.
func (i *Inflight) Set(m packets.Packet) bool {
	i.Lock()
	defer i.Unlock()

	if e, ok := i.internal[m.PacketID]; ok {
		e.pk = m // an update (PUBREL for PUBLISH, a quota wait) keeps its place
		return false
	}
	if i.internal == nil {
		i.internal = map[uint16]*inflightEntry{}
	}
	e := inflightEntries.Get().(*inflightEntry)
	i.seq++
	e.pk, e.seq = m, i.seq
	i.internal[m.PacketID] = e
	return true
}

// Get returns an inflight packet by packet id.
func (i *Inflight) Get(id uint16) (packets.Packet, bool) {
	i.RLock()
	defer i.RUnlock()

	if e, ok := i.internal[id]; ok {
		return e.pk, true
	}

	return packets.Packet{}, false
}

// Len returns the size of the inflight messages map.
func (i *Inflight) Len() int {
	i.RLock()
	defer i.RUnlock()
	return len(i.internal)
}

// Clone returns a new instance of Inflight with the same message data.
// This is used when transferring inflights from a taken-over session.
func (i *Inflight) Clone() *Inflight {
	c := NewInflights()
	i.RLock()
	defer i.RUnlock()
	c.internal = make(map[uint16]*inflightEntry, len(i.internal))
	for k, v := range i.internal {
		e := inflightEntries.Get().(*inflightEntry)
		*e = *v
		c.internal[k] = e
	}
	c.seq = i.seq
	return c
}

// GetAll returns all the inflight messages.
func (i *Inflight) GetAll(immediate bool) []packets.Packet {
	i.RLock()
	defer i.RUnlock()

	es := make([]*inflightEntry, 0, len(i.internal))
	for _, v := range i.internal {
		if !immediate || (immediate && v.pk.Expiry < 0) {
			es = append(es, v)
		}
	}

	// fork: in the order the packets were first set, which is the order
	// they were sent in [MQTT-4.6.0-5]. Upstream sorted by Created, whole
	// seconds truncated to 16 bits, unstably: messages of the same second
	// were resent in any order, and across a wrap of the truncation (every
	// 18 hours) newer before older.
	sort.Slice(es, func(a, b int) bool { return es[a].seq < es[b].seq })

	m := make([]packets.Packet, len(es))
	for k, e := range es {
		m[k] = e.pk
	}
	return m
}

// NextImmediate returns the next inflight packet which is indicated to be sent immediately.
// This typically occurs when the quota has been exhausted, and we need to wait until new quota
// is free to continue sending.
func (i *Inflight) NextImmediate() (packets.Packet, bool) {
	// fork: GetAll takes the read lock itself; taking it here as well
	// deadlocked behind a Set or Delete waiting between the two.
	m := i.GetAll(true)
	if len(m) > 0 {
		return m[0], true
	}

	return packets.Packet{}, false
}

// Delete removes an in-flight message from the map. Returns true if the message existed.
func (i *Inflight) Delete(id uint16) bool {
	i.Lock()
	defer i.Unlock()

	e, ok := i.internal[id]
	if ok {
		delete(i.internal, id)
		e.release()
	}
	return ok
}

// TakeRecieveQuota reduces the receive quota by 1.
func (i *Inflight) DecreaseReceiveQuota() {
	if atomic.LoadInt32(&i.receiveQuota) > 0 {
		atomic.AddInt32(&i.receiveQuota, -1)
	}
}

// TakeRecieveQuota increases the receive quota by 1.
func (i *Inflight) IncreaseReceiveQuota() {
	if atomic.LoadInt32(&i.receiveQuota) < atomic.LoadInt32(&i.maximumReceiveQuota) {
		atomic.AddInt32(&i.receiveQuota, 1)
	}
}

// ResetReceiveQuota resets the receive quota to the maximum allowed value.
func (i *Inflight) ResetReceiveQuota(n int32) {
	atomic.StoreInt32(&i.receiveQuota, n)
	atomic.StoreInt32(&i.maximumReceiveQuota, n)
}

// DecreaseSendQuota reduces the send quota by 1.
func (i *Inflight) DecreaseSendQuota() {
	if atomic.LoadInt32(&i.sendQuota) > 0 {
		atomic.AddInt32(&i.sendQuota, -1)
	}
}

// IncreaseSendQuota increases the send quota by 1.
func (i *Inflight) IncreaseSendQuota() {
	if atomic.LoadInt32(&i.sendQuota) < atomic.LoadInt32(&i.maximumSendQuota) {
		atomic.AddInt32(&i.sendQuota, 1)
	}
}

// ResetSendQuota resets the send quota to the maximum allowed value.
func (i *Inflight) ResetSendQuota(n int32) {
	atomic.StoreInt32(&i.sendQuota, n)
	atomic.StoreInt32(&i.maximumSendQuota, n)
}
