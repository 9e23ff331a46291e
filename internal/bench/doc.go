// Package bench is lastmile's load harness (cmd/lmbench): it drives a real
// broker process on loopback with many MQTT clients and measures what
// operators care about: memory per idle connection, connect rate, fan-in
// and fan-out throughput with end-to-end latency, broker CPU per message,
// and recovery from a reconnect storm; and, on lastmile only (scenarios
// with LastmileOnly, skipped on mosquitto with a note), shadow updates,
// the MQTT tunnel and the SNMP proxy, each against its direct path.
//
//	lmbench ──(A/B alternating, fresh process per run)──┬── lastmile serve (REST provisioning, full platform)
//	  │  scenarios: connect, fanin, fanout,              └── /usr/sbin/mosquitto (password + ACL files)
//	  │  reconnect-storm, shadow, tunnel, snmp (Register adds more)
//	  └─ minimal MQTT 3.1.1 client (mqtt.go), sources 127.0.0.x
//	     broker RSS and CPU from /proc/<pid>, its own CPU from getrusage
//
// Every scenario is bounded in time and count. Latency comes from a send
// timestamp in the payload, so it is end to end through the broker. The
// generator reports its own CPU so a reader can tell when it, not the
// broker, was the bottleneck.
package bench
