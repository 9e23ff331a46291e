// Package session defines the session state interface of the paho client (lastmile's fork of paho.golang).
package session
