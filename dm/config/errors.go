package config

import "errors"

// Sentinel errors; every error the Service returns to a caller wraps one of
// them or is a store failure.
var (
	// ErrInvalid: a malformed request (bad name, format, document, target).
	ErrInvalid = errors.New("config: invalid request")
	// ErrNotFound: no such profile, version, rollout or status.
	ErrNotFound = errors.New("config: not found")
	// ErrExists: the profile (or version number) already exists.
	ErrExists = errors.New("config: already exists")
	// ErrSchema: the document does not satisfy the profile's schema.
	ErrSchema = errors.New("config: document does not match the profile schema")
)
