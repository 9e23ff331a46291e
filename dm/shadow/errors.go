package shadow

import (
	"errors"
	"strings"
)

// Sentinel errors. Every error this package returns to a caller wraps one of
// them (or is a store failure, answered as 500).
var (
	// ErrInvalid: the request is malformed (bad JSON, no state, too deep,
	// bad name, bad filter). Code 400.
	ErrInvalid = errors.New("shadow: invalid request")
	// ErrNotFound: no such shadow (or device). Code 404.
	ErrNotFound = errors.New("shadow: not found")
	// ErrConflict: the request's version is not the stored one. Code 409.
	ErrConflict = errors.New("shadow: version conflict")
	// ErrTooLarge: the request or the resulting document exceeds the size
	// limit. Code 413.
	ErrTooLarge = errors.New("shadow: document too large")
	// ErrTooManyRequests: the connection has too many requests in flight.
	// Code 429.
	ErrTooManyRequests = errors.New("shadow: too many requests in flight")
)

// Code returns the numeric rejection code for err (the HTTP status of the
// same meaning) and a message for the device: 400, 404, 409, 413, 429, or
// 500 with a generic message for anything else (store failures are logged,
// not shown to devices).
func Code(err error) (int, string) {
	code := 500
	switch {
	case errors.Is(err, ErrInvalid):
		code = 400
	case errors.Is(err, ErrNotFound):
		code = 404
	case errors.Is(err, ErrConflict):
		code = 409
	case errors.Is(err, ErrTooLarge):
		code = 413
	case errors.Is(err, ErrTooManyRequests):
		code = 429
	}
	if code == 500 {
		return code, "internal error"
	}
	return code, strings.ReplaceAll(err.Error(), "shadow: ", "")
}
