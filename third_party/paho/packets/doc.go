// Package packets encodes and decodes MQTT 5 control packets (lastmile's fork of paho.golang's packets; see third_party/paho/FORK.md).
package packets
