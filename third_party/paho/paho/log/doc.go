// Package log is the logging interface of the paho client (lastmile's fork of paho.golang).
package log
