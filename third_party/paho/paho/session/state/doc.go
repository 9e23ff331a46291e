// Package state is the paho client's default session state (lastmile's fork of paho.golang).
package state
