// Package tunnel is the wire protocol that carries TCP connections between
// the platform and a device over the device's own MQTT connection, so an
// operator reaches a gateway's sshd or web UI without a management IP. It
// holds what both sides share: the frame codec, the signed session token,
// and Session, which multiplexes streams with credit-window flow control.
// The platform side is package relay, the device side package endpoint;
// they share only this package.
//
//	operator (lmctl, gRPC)                                   device (agent)
//	   |  TCP/gRPC                                              |  TCP
//	+--v---------------+   $dm/{id}/tunnel/{sid}/down   +------v-----------+
//	| relay.Relay      | -----------------------------> | endpoint.Endpoint |--> allow-listed
//	|  Session         |   MQTT broker (QoS 0)          |  Session          |    target
//	|   Stream 1,3,5.. | <----------------------------- |   Stream 1,3,5..  |    (127.0.0.1:22)
//	+------------------+   $dm/{id}/tunnel/{sid}/up     +-------------------+
//
//	session open:  relay  --session-open(target, token)-->  endpoint
//	                      <--session-accept | session-reject(reason)--
//	each TCP conn: relay  --open(window)-->   endpoint dials the target
//	                      <--accept(window) | reject(reason)--
//	then both ways:  data (<= credit) ... window(+n) ... fin ... reset
//
// Every frame carries a sequence number per session and direction. Frames
// go at MQTT QoS 0: over one MQTT connection they arrive in order, a
// duplicate (a QoS 1 redelivery, if configured) is dropped, and a gap ends
// the session with ReasonLost rather than corrupting a stream. QoS 0 was
// chosen by measurement (docs/tunnel.md): it is as fast as QoS 1 with the
// best window, has a third less latency and a fifth of the tail, takes no
// slot of the device's QoS 1 inflight quota, and is never written to the
// broker's session store. Loss cannot come from flow: the credit windows
// bound how many frames are queued for a device below the broker's
// per-client queue; it comes only from the device's connection dropping,
// which breaks the session's TCP connections just as a broken path would.
//
// Flow control: a side sends data only against credit the peer granted
// (each stream starts with the peer's window and gets more as the peer's
// reader consumes), so a slow reader on either side holds at most one
// window per stream and blocks the writer on the far side.
package tunnel
