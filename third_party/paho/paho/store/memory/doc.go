// Package memory is the paho client's in-memory store for session state (lastmile's fork of paho.golang).
package memory
