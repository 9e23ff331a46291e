// Package paho is paho.golang's low-level MQTT 5 client (lastmile's fork; see third_party/paho/FORK.md).
package paho
